package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const minimalConfig = `listen:
  - {address: "127.0.0.10:3128"}
forward:
  allow: [{host: "*.example.com"}]
`

func writeConfig(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "fixedgate.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoadConfigErrors(t *testing.T) {
	t.Setenv("FG_TEST_SHA", strings.Repeat("ab", 32))
	for _, tc := range []struct {
		name, yaml string
		want       []string // substrings of the error, each naming key path and problem
	}{
		{"unknown top-level key", minimalConfig + "listne: []\n", []string{"listne (line 5): unknown key"}},
		{"unknown nested key", "listen:\n  - {address: \"127.0.0.1:1\", tsl: true}\n", []string{"listen[0].tsl (line 2): unknown key (known here: address, tls, proxy_protocol)"}},
		{"proxy_protocol without trusted", "listen:\n  - {address: \"127.0.0.1:1\", tls: false, proxy_protocol: {optional: true}}\n", []string{"listen[0].proxy_protocol.trusted: list the networks of the load balancers"}},
		{"proxy_protocol host bits", "listen:\n  - {address: \"127.0.0.1:1\", tls: false, proxy_protocol: {trusted: [10.1.2.3/8]}}\n", []string{"listen[0].proxy_protocol.trusted[0]: 10.1.2.3/8 has host bits set (did you mean 10.0.0.0/8?)"}},
		{"proxy_protocol bad network", "listen:\n  - {address: \"127.0.0.1:1\", tls: false, proxy_protocol: {trusted: [balancer]}}\n", []string{"listen[0].proxy_protocol.trusted[0] (line 2)"}},
		{"unknown key in rule", minimalConfig + "  allow_networks: []\n  users: [{name: a, key: b}]\n", []string{"forward.users[0].key (line 6): unknown key"}},
		{"bad duration", minimalConfig + "limits: {dial_timeout: 10 seconds}\n", []string{`limits.dial_timeout (line 5): "10 seconds" is not a duration`}},
		{"negative duration", minimalConfig + "shutdown_grace: -1s\n", []string{`shutdown_grace (line 5): "-1s" is negative`}},
		{"bad CIDR", minimalConfig + "  allow_networks: [10.0.0/8]\n", []string{`forward.allow_networks[0] (line 5): "10.0.0/8" is not a valid CIDR`}},
		{"CIDR with host bits", minimalConfig + "  allow_networks: [10.1.2.3/8]\n", []string{"forward.allow_networks[0]: 10.1.2.3/8 has host bits set"}},
		{"listen without port", "listen: [{address: 127.0.0.10}]\n", []string{"listen[0].address: \"127.0.0.10\" must be IP:port"}},
		{"listen with name", "listen: [{address: \"proxy.example.com:443\"}]\n", []string{"not an IP address"}},
		{"listen port 0", "listen: [{address: \"127.0.0.1:0\"}]\n", []string{"port \"0\" is not 1-65535"}},
		{"duplicate listen", "listen: [{address: \"127.0.0.1:1\"}, {address: \"127.0.0.1:1\"}]\n", []string{"listen[1].address: 127.0.0.1:1 is already listed at [0]"}},
		{"no listen", "log: {level: info}\n", []string{"listen: at least one listener is required"}},
		{"bool as string", "listen: [{address: \"127.0.0.1:1\", tls: yes}]\n", []string{`listen[0].tls (line 1): "yes" is not a boolean`}},
		{"list where mapping", "listen: {address: \"127.0.0.1:1\"}\n", []string{"listen (line 1): expected a list"}},
		{"bad egress", minimalConfig + "egress: {addresses: [198.51.100.300]}\n", []string{`egress.addresses[0] (line 5): "198.51.100.300" is not a valid IP address`}},
		{"bad port in rule", "listen: [{address: \"127.0.0.1:1\"}]\nforward:\n  allow: [{host: a.com, ports: [443, 70000]}]\n", []string{"forward.allow[0].ports[1]: 70000 is not a port"}},
		{"bad glob", "listen: [{address: \"127.0.0.1:1\"}]\nforward:\n  allow: [{host: \"a*.com\"}]\n", []string{`forward.allow[0].host: "a*.com"`}},
		{"bad user key", minimalConfig + "  users: [{name: a, key_sha256: nothex}]\n", []string{"forward.users[0].key_sha256: must be 64 hex digits"}},
		{"unset env var", minimalConfig + "  users: [{name: a, key_sha256: \"${FG_TEST_UNSET_VAR}\"}]\n", []string{"forward.users[0].key_sha256 (line 5): environment variable FG_TEST_UNSET_VAR is not set"}},
		{"tls listener without source", "listen: [{address: \"127.0.0.1:1\", tls: true}]\n", []string{"tls: listen[0] has tls: true but no certificate source"}},
		{"bad log level", minimalConfig + "log: {level: loud}\n", []string{`log.level: "loud" is not one of`}},
		{"bad admin", minimalConfig + "admin: {listen: localhost:9090}\n", []string{"admin.listen: \"localhost:9090\" must be IP:port"}},
		{"bad resolver server", minimalConfig + "resolver: {servers: [dns.google]}\n", []string{"resolver.servers[0]:"}},
		{"limits out of range", minimalConfig + "limits: {max_header_bytes: 10}\n", []string{"limits.max_header_bytes: 10 is outside"}},
		{"contract notice below 14 days", minimalConfig + "ipranges:\n  notice: 72h\n", []string{"ipranges.notice: 72h"}},
		{"route upstream not https", minimalConfig + "routes:\n  - {host: a.test, upstream: \"http://b.test\"}\n", []string{"routes[0].upstream: \"http://b.test\" must be https://"}},
		{"route upstream with path", minimalConfig + "routes:\n  - {host: a.test, upstream: \"https://b.test/x\"}\n", []string{"routes[0].upstream: \"https://b.test/x\" must be https://name[:port] without"}},
		{"route host with port", minimalConfig + "routes:\n  - {host: \"a.test:443\", upstream: \"https://b.test\"}\n", []string{"routes[0].host: \"a.test:443\" must be a plain host name"}},
		{"route prefix", minimalConfig + "routes:\n  - {host: a.test, path_prefix: api, upstream: \"https://b.test\"}\n", []string{"routes[0].path_prefix: \"api\" must start with /"}},
		{"route twice", minimalConfig + "routes:\n  - {host: a.test, upstream: \"https://b.test\"}\n  - {host: A.test, upstream: \"https://c.test\"}\n", []string{"routes[1]: host \"A.test\" with path_prefix \"\" is already routed at [0]"}},
		{"route check interval", minimalConfig + "routes:\n  - {host: a.test, upstream: \"https://b.test\", check: {path: /h, interval: 10ms}}\n", []string{"routes[0].check.interval: 10ms, must be at least 1s"}},
		{"health percent", minimalConfig + "health:\n  outlier: {max_ejected_percent: 120}\n", []string{"health.outlier.max_ejected_percent: 120 is outside 0..100"}},
		{"health unknown key", minimalConfig + "health:\n  outlier: {consecutive_failure: 3}\n", []string{"consecutive_failure"}},
		{"gateway retries", minimalConfig + "gateway:\n  max_retries: 9\n", []string{"gateway.max_retries: 9 is outside 0..5"}},
		{"log flush interval", minimalConfig + "log: {flush_interval: 1m}\n", []string{"log.flush_interval: 1m0s must be between 0"}},
		{"duplicate key", minimalConfig + "log: {level: info}\nlog: {level: warn}\n", []string{"log (line 6): duplicate key"}},
		{"several problems at once", "listen: [{address: x}]\nlog: {level: loud, format: xml}\n", []string{"listen[0].address", "log.level", "log.format"}},
		{"not yaml", "listen: [\n", []string{"parse yaml"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := loadConfig(writeConfig(t, tc.yaml))
			if err == nil {
				t.Fatal("config accepted")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not contain %q:\n%v", w, err)
				}
			}
		})
	}
}

func TestLoadConfigDefaultsAndEnv(t *testing.T) {
	sha := strings.Repeat("0f", 32)
	t.Setenv("FG_TEST_SHA", sha)
	cfg, err := loadConfig(writeConfig(t, minimalConfig+"  users: [{name: acme, key_sha256: \"${FG_TEST_SHA}\"}]\nlimits: {dial_timeout: 3s}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Forward.Users[0].KeySHA256 != sha {
		t.Errorf("env not expanded: %q", cfg.Forward.Users[0].KeySHA256)
	}
	if cfg.Limits.DialTimeout.String() != "3s" || cfg.Limits.ReadHeaderTimeout.String() != "10s" {
		t.Errorf("limits: set value or default lost: %+v", cfg.Limits)
	}
	if cfg.Admin.Listen != "127.0.0.1:9090" || cfg.ShutdownGrace.String() != "30s" || cfg.Log.Format != "json" {
		t.Errorf("defaults not applied: %+v", cfg)
	}
}

// The example config documents every key; it must stay loadable.
func TestExampleConfigValidates(t *testing.T) {
	t.Setenv("FIXEDGATE_ACME_CORP_KEY_SHA256", strings.Repeat("ab", 32))
	if _, err := loadConfig("../../deploy/fixedgate.example.yaml"); err != nil {
		t.Fatal(err)
	}
}

func TestValidateCommand(t *testing.T) {
	var out, errb strings.Builder
	if code := run([]string{"validate", "--config", writeConfig(t, minimalConfig)}, &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	if !strings.Contains(out.String(), "OK") {
		t.Errorf("stdout %q", out.String())
	}
	out.Reset()
	errb.Reset()
	if code := run([]string{"validate", "--config", writeConfig(t, "listen: [{address: x}]\n")}, &out, &errb); code != 1 {
		t.Fatalf("bad config: exit %d, want 1", code)
	}
	if !strings.Contains(errb.String(), "listen[0].address") {
		t.Errorf("stderr %q", errb.String())
	}
	if code := run([]string{"validate"}, &out, &errb); code != 2 {
		t.Errorf("validate without --config: exit %d, want 2", code)
	}
	if code := run([]string{"nonsense"}, &out, &errb); code != 2 {
		t.Errorf("unknown command: exit %d, want 2", code)
	}
}
