package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/netip"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/fixedgate/fixedgate/ipranges"
)

// The subset of the Kubernetes API the manifests in deploy/kubernetes use.
type k8sMeta struct {
	Name   string            `yaml:"name"`
	Labels map[string]string `yaml:"labels"`
}

type k8sKeyPath struct {
	Key  string `yaml:"key"`
	Path string `yaml:"path"`
}

type k8sKeySource struct {
	Name  string       `yaml:"name"`
	Items []k8sKeyPath `yaml:"items"`
}

type k8sVolume struct {
	Name      string        `yaml:"name"`
	ConfigMap *k8sKeySource `yaml:"configMap"`
	Secret    *struct {
		SecretName string       `yaml:"secretName"`
		Items      []k8sKeyPath `yaml:"items"`
	} `yaml:"secret"`
	Projected *struct {
		Sources []struct {
			ConfigMap *k8sKeySource `yaml:"configMap"`
			Secret    *k8sKeySource `yaml:"secret"`
		} `yaml:"sources"`
	} `yaml:"projected"`
}

type k8sProbe struct {
	HTTPGet *struct {
		Path string `yaml:"path"`
		Port string `yaml:"port"` // a number or a port name
	} `yaml:"httpGet"`
	Exec *struct {
		Command []string `yaml:"command"`
	} `yaml:"exec"`
}

type k8sContainer struct {
	Name  string   `yaml:"name"`
	Image string   `yaml:"image"`
	Args  []string `yaml:"args"`
	Env   []struct {
		Name  string `yaml:"name"`
		Value string `yaml:"value"`
	} `yaml:"env"`
	Ports []struct {
		Name          string `yaml:"name"`
		ContainerPort int    `yaml:"containerPort"`
		HostPort      int    `yaml:"hostPort"`
	} `yaml:"ports"`
	ReadinessProbe *k8sProbe `yaml:"readinessProbe"`
	LivenessProbe  *k8sProbe `yaml:"livenessProbe"`
	Lifecycle      struct {
		PreStop *struct {
			Sleep *struct {
				Seconds int `yaml:"seconds"`
			} `yaml:"sleep"`
		} `yaml:"preStop"`
	} `yaml:"lifecycle"`
	Resources struct {
		Requests map[string]string `yaml:"requests"`
		Limits   map[string]string `yaml:"limits"`
	} `yaml:"resources"`
	SecurityContext struct {
		AllowPrivilegeEscalation *bool `yaml:"allowPrivilegeEscalation"`
		ReadOnlyRootFilesystem   bool  `yaml:"readOnlyRootFilesystem"`
		Capabilities             struct {
			Drop []string `yaml:"drop"`
			Add  []string `yaml:"add"`
		} `yaml:"capabilities"`
	} `yaml:"securityContext"`
	VolumeMounts []struct {
		Name      string `yaml:"name"`
		MountPath string `yaml:"mountPath"`
		SubPath   string `yaml:"subPath"`
		ReadOnly  bool   `yaml:"readOnly"`
	} `yaml:"volumeMounts"`
}

type k8sPodSpec struct {
	HostNetwork                   bool              `yaml:"hostNetwork"`
	DNSPolicy                     string            `yaml:"dnsPolicy"`
	NodeSelector                  map[string]string `yaml:"nodeSelector"`
	TerminationGracePeriodSeconds int               `yaml:"terminationGracePeriodSeconds"`
	SecurityContext               struct {
		RunAsNonRoot bool `yaml:"runAsNonRoot"`
		RunAsUser    int  `yaml:"runAsUser"`
	} `yaml:"securityContext"`
	Containers []k8sContainer `yaml:"containers"`
	Volumes    []k8sVolume    `yaml:"volumes"`
}

type k8sWorkload struct { // Deployment, DaemonSet
	Metadata k8sMeta `yaml:"metadata"`
	Spec     struct {
		Selector struct {
			MatchLabels map[string]string `yaml:"matchLabels"`
		} `yaml:"selector"`
		Template struct {
			Metadata k8sMeta    `yaml:"metadata"`
			Spec     k8sPodSpec `yaml:"spec"`
		} `yaml:"template"`
	} `yaml:"spec"`
}

type k8sService struct {
	Metadata k8sMeta `yaml:"metadata"`
	Spec     struct {
		Type                  string            `yaml:"type"`
		LoadBalancerIP        string            `yaml:"loadBalancerIP"`
		ExternalTrafficPolicy string            `yaml:"externalTrafficPolicy"`
		Selector              map[string]string `yaml:"selector"`
		Ports                 []struct {
			Name       string `yaml:"name"`
			Port       int    `yaml:"port"`
			TargetPort string `yaml:"targetPort"`
		} `yaml:"ports"`
	} `yaml:"spec"`
}

type k8sPDB struct {
	Metadata k8sMeta `yaml:"metadata"`
	Spec     struct {
		MaxUnavailable *int `yaml:"maxUnavailable"`
		MinAvailable   *int `yaml:"minAvailable"`
		Selector       struct {
			MatchLabels map[string]string `yaml:"matchLabels"`
		} `yaml:"selector"`
	} `yaml:"spec"`
}

type k8sConfigMap struct {
	Metadata k8sMeta           `yaml:"metadata"`
	Data     map[string]string `yaml:"data"`
}

// k8sManifests is every object in deploy/kubernetes, by kind.
type k8sManifests struct {
	ConfigMaps map[string]k8sConfigMap
	Workloads  map[string]k8sWorkload // "file: Kind/name"
	Services   []k8sService
	PDBs       []k8sPDB
	Files      map[string][]string // file -> kinds, to know which file holds which workload
}

func loadK8sManifests(t *testing.T) *k8sManifests {
	t.Helper()
	files, err := filepath.Glob("../../deploy/kubernetes/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests in deploy/kubernetes (%v)", err)
	}
	m := &k8sManifests{ConfigMaps: map[string]k8sConfigMap{}, Workloads: map[string]k8sWorkload{}, Files: map[string][]string{}}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		dec := yaml.NewDecoder(bytes.NewReader(data))
		for i := 0; ; i++ {
			var doc yaml.Node
			if err := dec.Decode(&doc); errors.Is(err, io.EOF) {
				break
			} else if err != nil {
				t.Fatalf("%s document %d: %v", f, i, err)
			}
			var head struct {
				APIVersion string  `yaml:"apiVersion"`
				Kind       string  `yaml:"kind"`
				Metadata   k8sMeta `yaml:"metadata"`
			}
			if err := doc.Decode(&head); err != nil {
				t.Fatalf("%s document %d: %v", f, i, err)
			}
			if head.APIVersion == "" || head.Kind == "" || head.Metadata.Name == "" {
				t.Fatalf("%s document %d: apiVersion, kind and metadata.name are required", f, i)
			}
			decode := func(v any) {
				if err := doc.Decode(v); err != nil {
					t.Fatalf("%s %s/%s: %v", f, head.Kind, head.Metadata.Name, err)
				}
			}
			base := filepath.Base(f)
			m.Files[base] = append(m.Files[base], head.Kind)
			switch head.Kind {
			case "ConfigMap":
				var cm k8sConfigMap
				decode(&cm)
				m.ConfigMaps[cm.Metadata.Name] = cm
			case "DaemonSet", "Deployment":
				var w k8sWorkload
				decode(&w)
				m.Workloads[base+": "+head.Kind+"/"+w.Metadata.Name] = w
			case "Service":
				var s k8sService
				decode(&s)
				m.Services = append(m.Services, s)
			case "PodDisruptionBudget":
				var p k8sPDB
				decode(&p)
				m.PDBs = append(m.PDBs, p)
			case "Kustomization":
			default:
				t.Fatalf("%s: %s/%s: the test does not know this kind; extend it", f, head.Kind, head.Metadata.Name)
			}
		}
	}
	return m
}

// mountedFiles returns the files a container sees, path -> "ConfigMap name/key" or "Secret name/key".
func (m *k8sManifests) mountedFiles(t *testing.T, spec k8sPodSpec, c k8sContainer) map[string]string {
	t.Helper()
	vols := map[string]k8sVolume{}
	for _, v := range spec.Volumes {
		vols[v.Name] = v
	}
	files := map[string]string{}
	add := func(dir, kind string, src *k8sKeySource) {
		if len(src.Items) == 0 {
			t.Errorf("volume from %s %s: list items, so the test (and readers) know the file names", kind, src.Name)
		}
		for _, it := range src.Items {
			if kind == "ConfigMap" {
				cm, ok := m.ConfigMaps[src.Name]
				if !ok {
					t.Errorf("ConfigMap %s is mounted but not defined in deploy/kubernetes", src.Name)
				} else if _, ok := cm.Data[it.Key]; !ok {
					t.Errorf("ConfigMap %s has no key %s", src.Name, it.Key)
				}
			}
			files[path.Join(dir, it.Path)] = kind + " " + src.Name + "/" + it.Key
		}
	}
	for _, vm := range c.VolumeMounts {
		v, ok := vols[vm.Name]
		if !ok {
			t.Errorf("container %s mounts volume %s, which the pod does not define", c.Name, vm.Name)
			continue
		}
		if vm.SubPath != "" {
			t.Errorf("volumeMount %s uses subPath: the kubelet never updates such a mount, so a changed contract or config would not reach the pod", vm.Name)
		}
		if !vm.ReadOnly {
			t.Errorf("volumeMount %s: want readOnly", vm.Name)
		}
		switch {
		case v.ConfigMap != nil:
			add(vm.MountPath, "ConfigMap", v.ConfigMap)
		case v.Secret != nil:
			add(vm.MountPath, "Secret", &k8sKeySource{Name: v.Secret.SecretName, Items: v.Secret.Items})
		case v.Projected != nil:
			for _, s := range v.Projected.Sources {
				if s.ConfigMap != nil {
					add(vm.MountPath, "ConfigMap", s.ConfigMap)
				}
				if s.Secret != nil {
					add(vm.MountPath, "Secret", s.Secret)
				}
			}
		default:
			t.Errorf("volume %s: the test knows configMap, secret and projected volumes only", v.Name)
		}
	}
	return files
}

func portOf(t *testing.T, hostport string) int {
	t.Helper()
	ap, err := netip.ParseAddrPort(hostport)
	if err != nil {
		t.Fatalf("%q: %v", hostport, err)
	}
	return int(ap.Port())
}

// TestKubernetesManifests parses every manifest in deploy/kubernetes and checks that each
// workload agrees with the config it mounts: ports, probes, mounted paths, the contract, the
// Service and the PodDisruptionBudget.
func TestKubernetesManifests(t *testing.T) {
	m := loadK8sManifests(t)
	if len(m.Workloads) != 2 {
		t.Fatalf("want the two topologies (hostNetwork DaemonSet, Deployment behind a LoadBalancer), got %v", slices.Sorted(maps.Keys(m.Workloads)))
	}
	// The secret the configs reference, and the node IP the hostNetwork config binds.
	t.Setenv("FIXEDGATE_ACME_CORP_KEY_SHA256", strings.Repeat("ab", 32))
	nodeIPs := []string{"203.0.113.10", "203.0.113.11"}

	for name, w := range m.Workloads {
		t.Run(strings.ReplaceAll(name, " ", ""), func(t *testing.T) {
			spec := w.Spec.Template.Spec
			for k, v := range w.Spec.Selector.MatchLabels {
				if w.Spec.Template.Metadata.Labels[k] != v {
					t.Errorf("selector %s=%s does not match the pod template's labels %v", k, v, w.Spec.Template.Metadata.Labels)
				}
			}
			if len(spec.Containers) != 1 {
				t.Fatalf("want one container, got %d", len(spec.Containers))
			}
			c := spec.Containers[0]
			files := m.mountedFiles(t, spec, c)

			// The --config file is mounted, from a ConfigMap, and loads.
			if len(c.Args) != 3 || c.Args[0] != "serve" || c.Args[1] != "--config" {
				t.Fatalf("args %q: want [serve --config FILE]", c.Args)
			}
			src, ok := files[c.Args[2]]
			if !ok || !strings.HasPrefix(src, "ConfigMap ") {
				t.Fatalf("--config %s is not mounted from a ConfigMap (mounted: %v)", c.Args[2], files)
			}
			cmName, key, _ := strings.Cut(strings.TrimPrefix(src, "ConfigMap "), "/")
			env := map[string]bool{}
			for _, e := range c.Env {
				env[e.Name] = true
			}
			cfgText := m.ConfigMaps[cmName].Data[key]
			for _, ref := range envRefs(cfgText) {
				if !env[ref] {
					t.Errorf("the config uses ${%s}, but the container does not set it", ref)
				}
			}
			if spec.HostNetwork {
				if !env["FIXEDGATE_NODE_IP"] {
					t.Fatal("hostNetwork: FIXEDGATE_NODE_IP (status.hostIP) is not set")
				}
				t.Setenv("FIXEDGATE_NODE_IP", nodeIPs[0])
			}
			cfgPath := filepath.Join(t.TempDir(), "fixedgate.yaml")
			if err := os.WriteFile(cfgPath, []byte(cfgText), 0o600); err != nil {
				t.Fatal(err)
			}
			cfg, err := loadConfig(cfgPath)
			if err != nil {
				t.Fatalf("ConfigMap %s/%s: %v", cmName, key, err)
			}

			// Every file the config names is mounted.
			needed := map[string]string{"ipranges.state": cfg.IPRanges.State}
			for i, f := range cfg.TLS.Files {
				needed[fmt.Sprintf("tls.files[%d].cert", i)] = f.Cert
				needed[fmt.Sprintf("tls.files[%d].key", i)] = f.Key
			}
			needed["tls.client_ca"] = cfg.TLS.ClientCA
			needed["upstream_tls.ca_file"] = cfg.UpstreamTLS.CAFile
			needed["upstream_tls.client_cert"] = cfg.UpstreamTLS.ClientCert
			needed["upstream_tls.client_key"] = cfg.UpstreamTLS.ClientKey
			needed["ipranges.signing_key"] = cfg.IPRanges.SigningKey
			for k, p := range needed {
				if p == "" {
					continue
				}
				if _, ok := files[p]; !ok {
					t.Errorf("%s is %s, which no volume mounts (mounted: %v)", k, p, slices.Sorted(maps.Keys(files)))
				}
			}
			if cfg.TLS.SelfSigned != nil || cfg.TLS.ACME != nil {
				t.Errorf("tls: self_signed and acme write to disk; the root filesystem is read-only and the state is a ConfigMap")
			}

			// The contract ConfigMap is valid, and the config agrees with it.
			if cfg.IPRanges.State == "" {
				t.Fatal("ipranges.state is not set: a production config needs the contract")
			}
			csrc := files[cfg.IPRanges.State]
			if !strings.HasPrefix(csrc, "ConfigMap ") {
				t.Fatalf("ipranges.state %s: want it from a ConfigMap, got %q", cfg.IPRanges.State, csrc)
			}
			ccm, ckey, _ := strings.Cut(strings.TrimPrefix(csrc, "ConfigMap "), "/")
			doc, err := ipranges.Parse([]byte(m.ConfigMaps[ccm].Data[ckey]))
			if err != nil {
				t.Fatalf("ConfigMap %s/%s: %v", ccm, ckey, err)
			}
			if err := doc.Validate(cfg.IPRanges.Notice); err != nil {
				t.Fatalf("ConfigMap %s/%s: %v", ccm, ckey, err)
			}
			now := time.Now()
			if spec.HostNetwork {
				for _, ip := range nodeIPs { // every node of the example
					t.Setenv("FIXEDGATE_NODE_IP", ip)
					c, err := loadConfig(cfgPath)
					if err != nil {
						t.Fatal(err)
					}
					if err := c.checkAgainstContract(doc, now); err != nil {
						t.Errorf("node %s: config against the contract: %v", ip, err)
					}
				}
			} else if err := cfg.checkAgainstContract(doc, now); err != nil {
				t.Errorf("config against the contract: %v", err)
			}

			// Container ports are exactly the listen ports (and admin's, when reachable).
			listenPorts := map[int]bool{}
			for _, l := range cfg.Listen {
				listenPorts[int(l.AddrPort().Port())] = true
			}
			admin := netip.MustParseAddrPort(cfg.Admin.Listen)
			wantPorts := maps.Clone(listenPorts)
			if !admin.Addr().IsLoopback() {
				wantPorts[int(admin.Port())] = true
			}
			gotPorts := map[int]bool{}
			portNames := map[string]int{}
			for _, p := range c.Ports {
				gotPorts[p.ContainerPort] = true
				portNames[p.Name] = p.ContainerPort
				if spec.HostNetwork && p.HostPort != p.ContainerPort {
					t.Errorf("hostNetwork: port %s hostPort %d != containerPort %d", p.Name, p.HostPort, p.ContainerPort)
				}
			}
			if !maps.Equal(gotPorts, wantPorts) {
				t.Errorf("container ports %v, want the config's listen (and non-loopback admin) ports %v", slices.Sorted(maps.Keys(gotPorts)), slices.Sorted(maps.Keys(wantPorts)))
			}

			// Probes: readiness on /readyz, liveness on /healthz, at admin.listen.
			checkProbe := func(which string, p *k8sProbe, wantPath string) {
				if p == nil {
					t.Errorf("%s probe missing", which)
					return
				}
				switch {
				case p.HTTPGet != nil:
					if admin.Addr().IsLoopback() {
						t.Errorf("%s probe: httpGet goes to the pod IP, but admin.listen is %s", which, admin)
					}
					port, err := strconv.Atoi(p.HTTPGet.Port)
					if err != nil {
						port = portNames[p.HTTPGet.Port]
					}
					if port != int(admin.Port()) || p.HTTPGet.Path != wantPath {
						t.Errorf("%s probe: httpGet %s on port %s (%d), want %s on admin port %d", which, p.HTTPGet.Path, p.HTTPGet.Port, port, wantPath, admin.Port())
					}
				case p.Exec != nil:
					cmd := p.Exec.Command
					if len(cmd) < 4 || cmd[0] != "/usr/local/bin/fixedgate" || cmd[1] != "healthcheck" || cmd[2] != "--url" {
						t.Errorf("%s probe: exec %q, want /usr/local/bin/fixedgate healthcheck --url …", which, cmd)
						return
					}
					u, err := url.Parse(cmd[3])
					if err != nil || u.Scheme != "http" || u.Path != wantPath {
						t.Errorf("%s probe: URL %s, want http://…%s", which, cmd[3], wantPath)
						return
					}
					host := netip.MustParseAddrPort(u.Host)
					if host.Port() != admin.Port() || (!admin.Addr().IsUnspecified() && host.Addr() != admin.Addr()) {
						t.Errorf("%s probe: URL %s does not reach admin.listen %s", which, cmd[3], admin)
					}
					// The probe command itself must parse (flags of this build).
					var out bytes.Buffer
					if code := run(append(append([]string(nil), cmd[1:]...), "--timeout", "1ms"), &out, &out); code == 2 {
						t.Errorf("%s probe: %q is a usage error: %s", which, cmd, out.String())
					}
				default:
					t.Errorf("%s probe: want httpGet or exec", which)
				}
			}
			checkProbe("readiness", c.ReadinessProbe, "/readyz")
			checkProbe("liveness", c.LivenessProbe, "/healthz")

			// Draining: preStop sleep, then shutdown_grace, within the grace period.
			if c.Lifecycle.PreStop == nil || c.Lifecycle.PreStop.Sleep == nil || c.Lifecycle.PreStop.Sleep.Seconds <= 0 {
				t.Errorf("want a preStop sleep (distroless has no shell)")
			} else {
				need := time.Duration(c.Lifecycle.PreStop.Sleep.Seconds)*time.Second + cfg.ShutdownGrace
				if got := time.Duration(spec.TerminationGracePeriodSeconds) * time.Second; got <= need {
					t.Errorf("terminationGracePeriodSeconds %s, want more than preStop sleep + shutdown_grace = %s", got, need)
				}
			}

			// Resources and security context.
			if c.Resources.Requests["cpu"] == "" || c.Resources.Requests["memory"] == "" || c.Resources.Limits["memory"] == "" {
				t.Errorf("resources %+v: want cpu and memory requests and a memory limit", c.Resources)
			}
			sc := c.SecurityContext
			if !spec.SecurityContext.RunAsNonRoot || spec.SecurityContext.RunAsUser == 0 || !sc.ReadOnlyRootFilesystem ||
				sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
				!slices.Equal(sc.Capabilities.Drop, []string{"ALL"}) || !slices.Equal(sc.Capabilities.Add, []string{"NET_BIND_SERVICE"}) {
				t.Errorf("securityContext pod %+v container %+v: want runAsNonRoot, a non-zero runAsUser, readOnlyRootFilesystem, no privilege escalation, drop ALL, add only NET_BIND_SERVICE", spec.SecurityContext, sc)
			}

			if spec.HostNetwork {
				if spec.DNSPolicy != "ClusterFirstWithHostNet" || len(spec.NodeSelector) == 0 {
					t.Errorf("hostNetwork: want dnsPolicy ClusterFirstWithHostNet and a nodeSelector, got %q %v", spec.DNSPolicy, spec.NodeSelector)
				}
				for _, l := range cfg.Listen {
					if l.AddrPort().Addr().IsUnspecified() {
						t.Errorf("hostNetwork: listen %s is a wildcard: it would bind every address of the node", l.Address)
					}
				}
				if admin.Addr().IsUnspecified() {
					t.Errorf("hostNetwork: admin.listen %s would be on the node's public addresses", admin)
				}
				return
			}

			// Behind a LoadBalancer: the Service and the PDB select these pods and the ports agree.
			var svc *k8sService
			for i, s := range m.Services {
				if maps.Equal(s.Spec.Selector, w.Spec.Template.Metadata.Labels) || selects(s.Spec.Selector, w.Spec.Template.Metadata.Labels) {
					svc = &m.Services[i]
				}
			}
			if svc == nil {
				t.Fatal("no Service selects these pods")
			}
			if svc.Spec.Type != "LoadBalancer" || svc.Spec.ExternalTrafficPolicy != "Local" {
				t.Errorf("Service %s: type %q externalTrafficPolicy %q, want LoadBalancer and Local (keeps client IPs)", svc.Metadata.Name, svc.Spec.Type, svc.Spec.ExternalTrafficPolicy)
			}
			lbIP, err := netip.ParseAddr(svc.Spec.LoadBalancerIP)
			if err != nil || !slices.Contains(cfg.PublicIPs, lbIP) {
				t.Errorf("Service loadBalancerIP %q must be one of the config's public_ips %v", svc.Spec.LoadBalancerIP, cfg.PublicIPs)
			}
			targets := map[int]bool{}
			for _, p := range svc.Spec.Ports {
				port, err := strconv.Atoi(p.TargetPort)
				if err != nil {
					var ok bool
					if port, ok = portNames[p.TargetPort]; !ok {
						t.Errorf("Service port %s: targetPort %q is not a container port name", p.Name, p.TargetPort)
					}
				}
				if !listenPorts[port] {
					t.Errorf("Service port %s targets %d, which is not a listen port %v", p.Name, port, slices.Sorted(maps.Keys(listenPorts)))
				}
				if p.Port != port {
					t.Errorf("Service port %s: %d -> %d; customers' firewalls allow-list the listen port, keep them equal", p.Name, p.Port, port)
				}
				targets[port] = true
			}
			if !maps.Equal(targets, listenPorts) {
				t.Errorf("Service targets %v, want every listen port %v", slices.Sorted(maps.Keys(targets)), slices.Sorted(maps.Keys(listenPorts)))
			}
			pdb := false
			for _, p := range m.PDBs {
				if selects(p.Spec.Selector.MatchLabels, w.Spec.Template.Metadata.Labels) && (p.Spec.MaxUnavailable != nil || p.Spec.MinAvailable != nil) {
					pdb = true
				}
			}
			if !pdb {
				t.Error("no PodDisruptionBudget selects these pods")
			}
		})
	}
}

// selects reports whether a non-empty label selector matches labels.
func selects(sel, labels map[string]string) bool {
	if len(sel) == 0 {
		return false
	}
	for k, v := range sel {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// envRefs lists the ${NAME} references in s.
func envRefs(s string) []string {
	var refs []string
	for {
		i := strings.Index(s, "${")
		if i < 0 {
			return refs
		}
		j := strings.Index(s[i:], "}")
		if j < 0 {
			return refs
		}
		refs = append(refs, s[i+2:i+j])
		s = s[i+j:]
	}
}

// TestDeployExampleConfigLoads: the reference config still decodes and validates.
func TestDeployExampleConfigLoads(t *testing.T) {
	cfg := loadExampleConfig(t)
	if len(cfg.Listen) == 0 || cfg.IPRanges.State == "" {
		t.Fatalf("example config: %+v", cfg)
	}
}
