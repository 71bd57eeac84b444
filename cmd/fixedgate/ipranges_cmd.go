package main

import (
	"fmt"
	"io"
)

const iprangesUsage = `usage (--config FILE instead of --state takes ipranges.state and ipranges.notice from it):
  fixedgate ipranges init     --state FILE --ingress CIDR --egress CIDR …   (flags repeat)
                              [--facility NAME] [--service NAME] [--notice 336h]
  fixedgate ipranges announce --state FILE (--ingress CIDR | --egress CIDR) [--notice 336h] [--facility NAME]
  fixedgate ipranges retire   --state FILE --cidr CIDR [--direction ingress|egress] [--after 336h] [--force]
  fixedgate ipranges show     --state FILE [--at RFC3339]
  fixedgate ipranges export   (--state FILE | --url URL) --format cidr|nftables|iptables|ip6tables|json
                              [--direction ingress|egress] [--include-announced] [--at RFC3339]
  fixedgate ipranges diff     OLD NEW                  (files or URLs; prints nothing when nothing changed)
  fixedgate ipranges watch    --url URL [--interval 5m] [--on-change CMD] [--once] [--notice 336h]
                              (exit 3 when an address went live without the promised notice)
  fixedgate ipranges verify   --url URL --pubkey FILE
  fixedgate ipranges keygen   --private FILE --public FILE     (ed25519 key pair for ipranges.signing_key)
`

// cmdIPRanges dispatches `fixedgate ipranges SUBCOMMAND`. The operator's commands that change
// the state file live in ipranges_state.go; the firewall team's commands that read a contract
// (export, diff, watch, verify) in ipranges_client.go.
func cmdIPRanges(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, iprangesUsage)
		return errUsage
	}
	sub, rest := args[0], args[1:]
	switch sub {
	case "init":
		return cmdIPRangesInit(rest, stdout, stderr)
	case "announce":
		return cmdIPRangesAnnounce(rest, stdout, stderr)
	case "retire":
		return cmdIPRangesRetire(rest, stdout, stderr)
	case "show":
		return cmdIPRangesShow(rest, stdout, stderr)
	case "export":
		return cmdIPRangesExport(rest, stdout, stderr)
	case "diff":
		return cmdIPRangesDiff(rest, stdout, stderr)
	case "watch":
		return cmdIPRangesWatch(rest, stdout, stderr)
	case "verify":
		return cmdIPRangesVerify(rest, stdout, stderr)
	case "keygen":
		return cmdIPRangesKeygen(rest, stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, iprangesUsage)
		return nil
	}
	fmt.Fprintf(stderr, "fixedgate ipranges: unknown subcommand %q\n\n%s", sub, iprangesUsage)
	return errUsage
}
