package main

import (
	"bytes"
	"context"
	"debug/elf"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// dockerInstruction is one instruction of a Dockerfile, continuation lines joined.
type dockerInstruction struct {
	Cmd  string // upper case: FROM, RUN, ...
	Args string
}

func parseDockerfile(t *testing.T, path string) []dockerInstruction {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []dockerInstruction
	var cur strings.Builder
	for _, line := range strings.Split(string(data), "\n") {
		trimmed := strings.TrimSpace(line)
		if cur.Len() == 0 && (trimmed == "" || strings.HasPrefix(trimmed, "#")) {
			continue
		}
		if strings.HasSuffix(trimmed, "\\") {
			cur.WriteString(strings.TrimSuffix(trimmed, "\\") + " ")
			continue
		}
		cur.WriteString(trimmed)
		cmd, args, _ := strings.Cut(cur.String(), " ")
		out = append(out, dockerInstruction{Cmd: strings.ToUpper(cmd), Args: strings.TrimSpace(args)})
		cur.Reset()
	}
	return out
}

// execForm decodes a JSON-array (exec form) argument list.
func execForm(t *testing.T, what, s string) []string {
	t.Helper()
	var argv []string
	if err := json.Unmarshal([]byte(s), &argv); err != nil {
		t.Fatalf("Dockerfile %s: %q is not the exec (JSON array) form: %v", what, s, err)
	}
	return argv
}

// dockerBuildCommand returns the Dockerfile's `go build` RUN line with its output path.
func dockerBuildCommand(t *testing.T, ins []dockerInstruction) (cmd, out string) {
	t.Helper()
	for _, in := range ins {
		if in.Cmd != "RUN" || !strings.Contains(in.Args, "go build") {
			continue
		}
		if cmd != "" {
			t.Fatal("Dockerfile: more than one RUN line runs go build")
		}
		cmd = in.Args
	}
	if cmd == "" {
		t.Fatal("Dockerfile: no RUN line runs go build")
	}
	for _, want := range []string{"CGO_ENABLED=0 ", "-trimpath", "-s -w", "-X main.version=${VERSION}", "./cmd/fixedgate"} {
		if !strings.Contains(cmd, want) {
			t.Fatalf("Dockerfile build command %q lacks %q", cmd, want)
		}
	}
	f := strings.Fields(cmd)
	for i, a := range f {
		if a == "-o" && i+1 < len(f) {
			out = f[i+1]
		}
	}
	if out == "" {
		t.Fatalf("Dockerfile build command %q has no -o OUTPUT", cmd)
	}
	return cmd, out
}

// TestDockerfile checks the runtime stage and builds the binary with the Dockerfile's own build
// command, then (as root) runs it in an empty root that holds only the binary, a config and the
// CA bundle: what the distroless image gives it.
func TestDockerfile(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary; skipped with -short")
	}
	repo, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	ins := parseDockerfile(t, filepath.Join(repo, "Dockerfile"))

	// The runtime stage: distroless static (CA certificates, no shell), non-root, fixedgate as the
	// entrypoint, the state volume, the admin port exposed, and a shell-free health check.
	var last []dockerInstruction
	for _, in := range ins {
		if in.Cmd == "FROM" {
			last = nil
		}
		last = append(last, in)
	}
	var entry, health []string
	var user, volumes, expose string
	for _, in := range last {
		switch in.Cmd {
		case "FROM":
			if !strings.HasPrefix(in.Args, "gcr.io/distroless/static") || !strings.HasSuffix(in.Args, ":nonroot") {
				t.Errorf("runtime stage FROM %q: want gcr.io/distroless/static…:nonroot", in.Args)
			}
		case "USER":
			user = in.Args
		case "ENTRYPOINT":
			entry = execForm(t, "ENTRYPOINT", in.Args)
		case "VOLUME":
			volumes += " " + in.Args
		case "EXPOSE":
			expose += " " + in.Args + " "
		case "HEALTHCHECK":
			_, c, ok := strings.Cut(in.Args, "CMD ")
			if !ok {
				t.Fatalf("HEALTHCHECK %q has no CMD", in.Args)
			}
			health = execForm(t, "HEALTHCHECK CMD", strings.TrimSpace(c))
		}
	}
	if user == "" || strings.HasPrefix(user, "root") || strings.HasPrefix(user, "0") {
		t.Errorf("runtime USER %q: want a non-root user", user)
	}
	if len(entry) != 1 || entry[0] != "/usr/local/bin/fixedgate" {
		t.Errorf("ENTRYPOINT %q: want [/usr/local/bin/fixedgate]", entry)
	}
	for _, v := range []string{`"/var/lib/fixedgate"`, `"/var/lib/fixedgate/certs"`} {
		if !strings.Contains(volumes, v) {
			t.Errorf("VOLUME %s: want %s", volumes, v)
		}
	}
	adminPort := strings.TrimPrefix(defaultConfig().Admin.Listen, "127.0.0.1:")
	for _, p := range []string{"443", "3128", adminPort} {
		if !strings.Contains(expose, " "+p+" ") {
			t.Errorf("EXPOSE%s: want port %s", expose, p)
		}
	}
	wantURL := "http://" + defaultConfig().Admin.Listen + "/readyz"
	if len(health) < 4 || health[0] != "/usr/local/bin/fixedgate" || health[1] != "healthcheck" || health[2] != "--url" || health[3] != wantURL {
		t.Fatalf("HEALTHCHECK CMD %q: want [/usr/local/bin/fixedgate healthcheck --url %s …]", health, wantURL)
	}

	// The build, exactly as the Dockerfile writes it, with the output path moved to a temp dir.
	build, out := dockerBuildCommand(t, ins)
	const stamped = "v0.0.0-dockertest"
	bin := filepath.Join(t.TempDir(), "fixedgate")
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "sh", "-c", strings.Replace(build, "-o "+out, "-o "+bin, 1))
	cmd.Dir = repo
	cmd.Env = append(os.Environ(), "VERSION="+stamped)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("the Dockerfile's build command failed: %v\n%s", err, b)
	}
	checkStaticELF(t, bin)

	t.Run("EmptyRoot", func(t *testing.T) {
		dockerRunInEmptyRoot(t, bin, stamped, health)
	})
}

// checkStaticELF: no program interpreter, no shared libraries, no symbol table (-s).
func checkStaticELF(t *testing.T, bin string) {
	t.Helper()
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Errorf("%s has a PT_INTERP program header: dynamically linked", bin)
		}
	}
	if f.Section(".dynamic") != nil {
		if libs, err := f.DynString(elf.DT_NEEDED); err != nil || len(libs) > 0 {
			t.Errorf("%s needs shared libraries %q (%v)", bin, libs, err)
		}
	}
	if f.Section(".symtab") != nil {
		t.Errorf("%s has a symbol table: -ldflags -s was not applied", bin)
	}
}

func freeLoopbackPort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func dockerRunInEmptyRoot(t *testing.T, bin, stamped string, health []string) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: chroot into an empty directory is how this test stands in for the image without Docker")
	}
	chroot, err := exec.LookPath("chroot")
	if err != nil {
		t.Skip("needs chroot(8) to run the binary in an empty root")
	}
	const caBundle = "/etc/ssl/certs/ca-certificates.crt"
	ca, err := os.ReadFile(caBundle)
	if err != nil {
		t.Skipf("needs the CA bundle %s (distroless ships the same file): %v", caBundle, err)
	}
	root := t.TempDir()
	proxyPort, adminPort := freeLoopbackPort(t), freeLoopbackPort(t)
	config := fmt.Sprintf(`listen:
  - {address: "127.0.0.1:%d", tls: false}
forward:
  allow: [{host: "*.example.com", ports: [443]}]
admin:
  listen: "127.0.0.1:%d"
shutdown_grace: 5s
`, proxyPort, adminPort)
	binData, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	for path, f := range map[string]struct {
		data []byte
		mode os.FileMode
	}{
		"usr/local/bin/fixedgate":         {binData, 0o755},
		"etc/fixedgate/fixedgate.yaml":    {[]byte(config), 0o644},
		strings.TrimPrefix(caBundle, "/"): {ca, 0o644},
	} {
		p := filepath.Join(root, path)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, f.data, f.mode); err != nil {
			t.Fatal(err)
		}
	}
	// Inside the root: nothing but these three files, and an empty environment.
	inRoot := func(ctx context.Context, args ...string) *exec.Cmd {
		c := exec.CommandContext(ctx, chroot, append([]string{root}, args...)...)
		c.Env = []string{}
		return c
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	b, err := inRoot(ctx, "/usr/local/bin/fixedgate", "version").CombinedOutput()
	if err != nil || strings.TrimSpace(string(b)) != "fixedgate "+stamped {
		t.Fatalf("fixedgate version in the empty root: %v, output %q; want %q", err, b, "fixedgate "+stamped)
	}

	var logs bytes.Buffer
	serve := inRoot(ctx, "/usr/local/bin/fixedgate", "serve", "--config", "/etc/fixedgate/fixedgate.yaml")
	serve.Stdout, serve.Stderr = &logs, &logs
	if err := serve.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- serve.Wait() }()
	defer func() {
		serve.Process.Kill()
		<-done
	}()

	readyz := fmt.Sprintf("http://127.0.0.1:%d/readyz", adminPort)
	client := &http.Client{Transport: &http.Transport{Proxy: nil}, Timeout: 2 * time.Second}
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := client.Get(readyz)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		select {
		case err := <-done:
			done <- err
			t.Fatalf("serve exited before /readyz answered 200: %v\n%s", err, logs.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz did not answer 200 within 20s (last: %v)\n%s", err, logs.String())
		}
		time.Sleep(100 * time.Millisecond)
	}

	// The image's HEALTHCHECK command, run in the same root, with the admin port of this test.
	hc := append([]string(nil), health...)
	hc[3] = readyz
	if b, err := inRoot(ctx, hc...).CombinedOutput(); err != nil {
		t.Fatalf("HEALTHCHECK %q in the empty root: %v\n%s", hc, err, b)
	}

	if err := serve.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		done <- err
		if err != nil {
			t.Fatalf("serve after SIGTERM: %v, want exit 0\n%s", err, logs.String())
		}
	case <-time.After(15 * time.Second):
		t.Fatalf("serve did not exit within 15s of SIGTERM\n%s", logs.String())
	}
}
