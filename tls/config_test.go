package tls

import (
	gotls "crypto/tls"
	"slices"
	"strings"
	"testing"
)

func TestConfigValidate(t *testing.T) {
	files := []FilePair{{Cert: "/etc/fixedgate/tls.crt", Key: "/etc/fixedgate/tls.key"}}
	acme := &ACMEConfig{Email: "ops@example.com", Domains: []string{"proxy.api.example.com"}}
	cases := []struct {
		name string
		cfg  Config
		want []string // substrings; empty: valid
	}{
		{"empty is consistent", Config{}, nil},
		{"files", Config{Files: files, DefaultName: "proxy.api.example.com", ClientCA: "/etc/ca.pem"}, nil},
		{"self_signed", Config{SelfSigned: &SelfSignedConfig{Dir: "./data"}, MinVersion: "1.3"}, nil},
		{"acme parses", Config{ACME: acme}, nil},
		{"default_name IP", Config{Files: files, DefaultName: "203.0.113.10"}, nil},
		{"curves mixed case", Config{Files: files, Curves: []string{"x25519mlkem768", "X25519", "p256"}}, nil},
		{"min_version 1.2", Config{Files: files, MinVersion: "1.2"}, nil},
		{"two sources", Config{Files: files, SelfSigned: &SelfSignedConfig{Dir: "d"}},
			[]string{"only one of acme, files, self_signed may be set (found: files, self_signed)"}},
		{"three sources", Config{ACME: acme, Files: files, SelfSigned: &SelfSignedConfig{Dir: "d"}},
			[]string{"(found: acme, files, self_signed)"}},
		{"empty key", Config{Files: []FilePair{files[0], {Cert: "b.crt"}}}, []string{"files[1].key: empty"}},
		{"empty cert and key", Config{Files: []FilePair{{}}}, []string{"files[0].cert: empty", "files[0].key: empty"}},
		{"self_signed dir", Config{SelfSigned: &SelfSignedConfig{}}, []string{"self_signed.dir: empty"}},
		{"min_version 1.1", Config{Files: files, MinVersion: "1.1"}, []string{`min_version: "1.1" is below the minimum 1.2`}},
		{"min_version 1.0", Config{Files: files, MinVersion: "1.0"}, []string{`min_version: "1.0" is below the minimum 1.2`}},
		{"min_version junk", Config{Files: files, MinVersion: "TLS13"}, []string{`min_version: unknown TLS version "TLS13" (known: 1.2, 1.3)`}},
		{"unknown curve", Config{Files: files, Curves: []string{"X25519", "X448"}},
			[]string{`curves[1]: unknown curve "X448" (known: X25519MLKEM768, SecP256r1MLKEM768, SecP384r1MLKEM1024, X25519, P256, P384, P521)`}},
		{"empty curve", Config{Files: files, Curves: []string{""}}, []string{"curves[0]: empty"}},
		{"duplicate curve", Config{Files: files, Curves: []string{"X25519", "x25519"}}, []string{`curves[1]: "x25519" repeats curves[0]`}},
		{"only hybrids with 1.2", Config{Files: files, Curves: []string{"X25519MLKEM768"}},
			[]string{"curves: only post-quantum hybrids are listed"}},
		{"default_name with port", Config{Files: files, DefaultName: "proxy.example.com:443"},
			[]string{`default_name: "proxy.example.com:443" is not a host name or IP address`}},
		{"default_name wildcard", Config{Files: files, DefaultName: "*.example.com"},
			[]string{`default_name: "*.example.com" is not a host name or IP address`}},
		{"acme no domains", Config{ACME: &ACMEConfig{}}, []string{"acme.domains: empty"}},
		{"acme wildcard", Config{ACME: &ACMEConfig{Domains: []string{"ok.example.com", "*.example.com"}}},
			[]string{`acme.domains[1]: "*.example.com" is a wildcard`}},
		{"acme IP", Config{ACME: &ACMEConfig{Domains: []string{"203.0.113.10"}}}, []string{`acme.domains[0]: "203.0.113.10" is an IP address`}},
		{"acme bad name", Config{ACME: &ACMEConfig{Domains: []string{"bad name"}}}, []string{`acme.domains[0]: "bad name" is not a valid host name`}},
		{"acme ca", Config{ACME: &ACMEConfig{Domains: []string{"a.example.com"}, CA: "http://acme.example.com/dir"}},
			[]string{`acme.ca: "http://acme.example.com/dir" is not an https:// ACME directory URL`}},
		{"acme email", Config{ACME: &ACMEConfig{Domains: []string{"a.example.com"}, Email: "ops"}}, []string{`acme.email: "ops" is not an email address`}},
		{"acme http_listen", Config{ACME: &ACMEConfig{Domains: []string{"a.example.com"}, HTTPListen: "203.0.113.10"}},
			[]string{`acme.http_listen: "203.0.113.10" is not host:port`}},
		{"several problems at once", Config{Files: []FilePair{{Cert: "a"}}, MinVersion: "1.1"},
			[]string{"files[0].key: empty", `min_version: "1.1" is below the minimum 1.2`}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("no error, want %q", tc.want)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
			if got, want := len(strings.Split(err.Error(), "\n")), len(tc.want); got != want {
				t.Errorf("error has %d lines, want %d: %q", got, want, err)
			}
		})
	}
}

func TestParseCurves(t *testing.T) {
	cases := []struct {
		in      []string
		want    []gotls.CurveID
		wantErr string
	}{
		{nil, nil, ""},
		{[]string{}, nil, ""},
		{[]string{"X25519MLKEM768", "X25519", "P256"}, []gotls.CurveID{gotls.X25519MLKEM768, gotls.X25519, gotls.CurveP256}, ""},
		{[]string{"x25519", "p384", "P521"}, []gotls.CurveID{gotls.X25519, gotls.CurveP384, gotls.CurveP521}, ""},
		{[]string{"secp256r1mlkem768", "SecP384r1MLKEM1024"}, []gotls.CurveID{gotls.SecP256r1MLKEM768, gotls.SecP384r1MLKEM1024}, ""},
		{[]string{"P-256", "prime256v1"}, nil, `curves[1]: "prime256v1" repeats curves[0]`},
		{[]string{" X25519 "}, []gotls.CurveID{gotls.X25519}, ""},
		{[]string{"X448"}, nil, `curves[0]: unknown curve "X448" (known: X25519MLKEM768, SecP256r1MLKEM768, SecP384r1MLKEM1024, X25519, P256, P384, P521)`},
		{[]string{"X25519", "  "}, nil, "curves[1]: empty"},
		{[]string{"CurveP256"}, nil, `curves[0]: unknown curve "CurveP256"`},
	}
	for _, tc := range cases {
		got, err := ParseCurves(tc.in)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("ParseCurves(%q) error %v, want %q", tc.in, err, tc.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("ParseCurves(%q): %v", tc.in, err)
			continue
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("ParseCurves(%q) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

func TestUpstreamValidate(t *testing.T) {
	cases := []struct {
		name string
		cfg  UpstreamConfig
		want string
	}{
		{"empty", UpstreamConfig{}, ""},
		{"full", UpstreamConfig{CAFile: "ca.pem", ClientCert: "c.crt", ClientKey: "c.key", MinVersion: "1.3"}, ""},
		{"cert without key", UpstreamConfig{ClientCert: "c.crt"}, "client_key: empty while client_cert is set; set both or neither"},
		{"key without cert", UpstreamConfig{ClientKey: "c.key"}, "client_cert: empty while client_key is set; set both or neither"},
		{"min_version", UpstreamConfig{MinVersion: "1.1"}, `min_version: "1.1" is below the minimum 1.2`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tc.want != "" && (err == nil || err.Error() != tc.want):
				t.Fatalf("error %v, want %q", err, tc.want)
			}
		})
	}
}
