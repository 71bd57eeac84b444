package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

const systemdUnit = "../../deploy/systemd/fixedgate.service"

// parseUnit returns a unit file's [Service] (and other) settings as section.Key -> values.
func parseUnit(t *testing.T, data string) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	section := ""
	for _, line := range strings.Split(data, "\n") {
		line = strings.TrimSpace(line)
		switch {
		case line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";"):
		case strings.HasPrefix(line, "["):
			section = strings.Trim(line, "[]")
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok {
				t.Fatalf("unit line %q is not KEY=VALUE", line)
			}
			out[section+"."+k] = append(out[section+"."+k], v)
		}
	}
	return out
}

// TestSystemdUnit checks the settings the README promises, then has systemd-analyze verify the
// unit (with ExecStart pointed at a freshly built binary, since /usr/local/bin/fixedgate does not
// exist here) and rate its sandboxing.
func TestSystemdUnit(t *testing.T) {
	data, err := os.ReadFile(systemdUnit)
	if err != nil {
		t.Fatal(err)
	}
	u := parseUnit(t, string(data))
	want := map[string]string{
		"Service.Type":                    "exec",
		"Service.ExecStart":               "/usr/local/bin/fixedgate serve --config /etc/fixedgate/fixedgate.yaml",
		"Service.ExecReload":              "/bin/kill -HUP $MAINPID",
		"Service.Restart":                 "on-failure",
		"Service.User":                    "fixedgate",
		"Service.StateDirectory":          "fixedgate",
		"Service.AmbientCapabilities":     "CAP_NET_BIND_SERVICE",
		"Service.CapabilityBoundingSet":   "CAP_NET_BIND_SERVICE",
		"Service.NoNewPrivileges":         "yes",
		"Service.ProtectSystem":           "strict",
		"Service.ProtectHome":             "yes",
		"Service.PrivateTmp":              "yes",
		"Service.PrivateDevices":          "yes",
		"Service.ProtectKernelTunables":   "yes",
		"Service.ProtectKernelModules":    "yes",
		"Service.ProtectControlGroups":    "yes",
		"Service.RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX AF_NETLINK",
		"Service.RestrictNamespaces":      "yes",
		"Service.LockPersonality":         "yes",
		"Service.MemoryDenyWriteExecute":  "yes",
		"Service.SystemCallArchitectures": "native",
		"Service.SystemCallFilter":        "@system-service",
		"Service.LimitNOFILE":             "1048576",
		"Install.WantedBy":                "multi-user.target",
	}
	for k, v := range want {
		if got := u[k]; len(got) != 1 || got[0] != v {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
	if d := u["Service.DynamicUser"]; len(d) > 0 && d[0] != "no" {
		t.Errorf("DynamicUser=%s: the state directory is shared with operators running `fixedgate ipranges` as User=, keep a fixed user", d[0])
	}
	// The state directory is where the configs put the contract and certificates.
	example := loadExampleConfig(t)
	if dir := "/var/lib/" + u["Service.StateDirectory"][0]; filepath.Dir(example.IPRanges.State) != dir {
		t.Errorf("StateDirectory %s, but the example config keeps ipranges.state at %s", dir, example.IPRanges.State)
	}
	// SIGTERM lets connections drain for shutdown_grace; systemd must not SIGKILL before.
	stop, err := time.ParseDuration(strings.Join(u["Service.TimeoutStopSec"], ""))
	if err != nil {
		t.Fatalf("TimeoutStopSec %q: %v", u["Service.TimeoutStopSec"], err)
	}
	if grace := defaultConfig().ShutdownGrace; stop < grace+5*time.Second {
		t.Errorf("TimeoutStopSec=%s, want at least shutdown_grace (%s) plus a margin", stop, grace)
	}
	// The sysusers.d file creates the User=.
	sysusers, err := os.ReadFile("../../deploy/systemd/fixedgate.sysusers")
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`(?m)^u fixedgate `).Match(sysusers) {
		t.Errorf("fixedgate.sysusers does not create user fixedgate:\n%s", sysusers)
	}

	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze not installed (.ci/run installs Debian's systemd package)")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "fixedgate")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if b, err := exec.CommandContext(ctx, "go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, b)
	}
	unit := filepath.Join(dir, "fixedgate.service")
	if err := os.WriteFile(unit, []byte(strings.ReplaceAll(string(data), "/usr/local/bin/fixedgate", bin)), 0o644); err != nil {
		t.Fatal(err)
	}
	// verify exits 0 on unknown keys and bad values (it ignores them), so any output fails.
	b, err := exec.CommandContext(ctx, analyze, "verify", unit).CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(b))) > 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, b)
	}
	// The sandbox, as systemd rates it (0 = locked down, 10 = none): "OK" is up to 4.9; hold 2.5.
	b, _ = exec.CommandContext(ctx, analyze, "security", "--offline=true", unit).CombinedOutput()
	m := regexp.MustCompile(`Overall exposure level for fixedgate\.service: ([0-9.]+)`).FindSubmatch(b)
	if m == nil {
		t.Fatalf("systemd-analyze security gave no exposure level:\n%s", b)
	}
	if level, _ := strconv.ParseFloat(string(m[1]), 64); level > 2.5 {
		t.Errorf("systemd-analyze security: exposure %s, want at most 2.5\n%s", m[1], b)
	}
}

// loadExampleConfig loads deploy/fixedgate.example.yaml with the secret it references set.
func loadExampleConfig(t *testing.T) *Config {
	t.Helper()
	t.Setenv("FIXEDGATE_ACME_CORP_KEY_SHA256", strings.Repeat("ab", 32))
	cfg, err := loadConfig("../../deploy/fixedgate.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}
