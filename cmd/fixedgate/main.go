// Command fixedgate is a TLS-terminating proxy on a fixed set of IP addresses: customers use it
// as HTTPS_PROXY, and it reaches a changing backend fleet from fixed egress addresses. See
// README.md for the two commands to start with and DESIGN.md for the whole picture.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"time"

	"github.com/fixedgate/fixedgate/ipranges"
)

// version is stamped at build time: -ldflags "-X main.version=v1.2.3".
var version = ""

const usage = `fixedgate — a proxy on fixed IPs for firewalls that allow-list

usage:
  fixedgate serve    [--config FILE]   run the proxy (no --config: a loopback dev setup)
  fixedgate demo     [--keep]          run the whole system on loopback and show what it does
  fixedgate validate --config FILE     check a config file and its contract; opens no sockets
  fixedgate ipranges SUBCOMMAND        maintain or consume the ip-ranges contract (ipranges help)
  fixedgate status post --config FILE --state STATE --message TEXT [--impact degraded|outage]
                                       post an incident update on the status page
  fixedgate healthcheck --url URL      GET URL, exit 0 on 2xx, else 1 (for images without a shell)
  fixedgate version                    print the version
`

// errUsage marks a command-line mistake: exit status 2, like flag's own errors.
var errUsage = errors.New("usage")

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	var err error
	switch args[0] {
	case "serve":
		err = cmdServe(args[1:], stdout, stderr)
	case "demo":
		err = cmdDemo(args[1:], stdout, stderr)
	case "validate":
		err = cmdValidate(args[1:], stdout, stderr)
	case "ipranges":
		err = cmdIPRanges(args[1:], stdout, stderr)
	case "healthcheck":
		err = cmdHealthcheck(args[1:], stdout, stderr)
	case "status":
		err = cmdStatus(args[1:], stdout, stderr)
	case "version", "--version", "-version":
		fmt.Fprintln(stdout, "fixedgate", versionString())
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
	default:
		fmt.Fprintf(stderr, "fixedgate: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
	var ec interface{ ExitCode() int }
	switch {
	case err == nil:
		return 0
	case errors.Is(err, errUsage), errors.Is(err, flag.ErrHelp):
		return 2
	case errors.As(err, &ec):
		fmt.Fprintln(stderr, "fixedgate:", err)
		return ec.ExitCode()
	default:
		fmt.Fprintln(stderr, "fixedgate:", err)
		return 1
	}
}

func versionString() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "dev"
}

// newFlags returns a FlagSet that reports its errors to stderr and returns them (no os.Exit).
func newFlags(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("fixedgate "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}

func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		return errUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(fs.Output(), "%s: unexpected argument %q\n", fs.Name(), fs.Arg(0))
		return errUsage
	}
	return nil
}

func cmdValidate(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("validate", stderr)
	path := fs.String("config", "", "config file to check")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *path == "" {
		fmt.Fprintln(stderr, "fixedgate validate: --config FILE is required")
		return errUsage
	}
	cfg, err := loadConfig(*path)
	if err != nil {
		return err
	}
	var doc *ipranges.Document
	contract := "no contract (ipranges.state is not set)"
	if cfg.IPRanges.State != "" {
		if doc, err = ipranges.Load(cfg.IPRanges.State, cfg.IPRanges.Notice); err != nil {
			return err
		}
		contract = fmt.Sprintf("contract %s: sync_token %s, %d prefixes", cfg.IPRanges.State, doc.SyncToken, len(doc.Prefixes))
	}
	if err := cfg.checkAgainstContract(doc, time.Now()); err != nil {
		return fmt.Errorf("config %s against the contract:\n%w", *path, indent(err))
	}
	fmt.Fprintf(stdout, "%s: OK (%d listeners, %d egress addresses, %d routes, %d allow rules, %d users; %s)\n",
		*path, len(cfg.Listen), len(cfg.Egress.Addresses), len(cfg.Routes), len(cfg.Forward.Allow), len(cfg.Forward.Users), contract)
	return nil
}
