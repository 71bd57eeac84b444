package strictyaml

import (
	"net/netip"
	"strings"
	"testing"
	"time"
)

type inner struct {
	Name  string         `yaml:"name"`
	Wait  time.Duration  `yaml:"wait"`
	Nets  []netip.Prefix `yaml:"nets"`
	Count int            `yaml:"count"`
}

type outer struct {
	Inner  inner             `yaml:"inner"`
	List   []inner           `yaml:"list"`
	Ptr    *inner            `yaml:"ptr"`
	Labels map[string]string `yaml:"labels"`
	On     bool              `yaml:"on"`
}

func TestDecode(t *testing.T) {
	t.Setenv("SY_SECRET", "hunter2")
	var o outer
	o.Inner.Count = 7 // a default the document does not touch
	err := Decode([]byte(`
inner: {name: "${SY_SECRET}", wait: 1m30s, nets: [10.0.0.0/8]}
list: [{name: a}, {name: "$${literal}"}]
ptr: {count: 0x10}
labels: {k: v}
on: true
`), &o)
	if err != nil {
		t.Fatal(err)
	}
	if o.Inner.Name != "hunter2" || o.Inner.Wait != 90*time.Second || o.Inner.Count != 7 || o.Inner.Nets[0].String() != "10.0.0.0/8" {
		t.Errorf("inner = %+v", o.Inner)
	}
	if len(o.List) != 2 || o.List[1].Name != "${literal}" || o.Ptr.Count != 16 || o.Labels["k"] != "v" || !o.On {
		t.Errorf("decoded %+v", o)
	}
}

func TestDecodeErrors(t *testing.T) {
	for _, tc := range []struct{ doc, want string }{
		{"inner: {nmae: x}", "inner.nmae (line 1): unknown key (known here: name, wait, nets, count)"},
		{"list: [{wait: soon}]", `list[0].wait (line 1): "soon" is not a duration`},
		{"inner: {nets: [1.2.3/8]}", `inner.nets[0] (line 1): "1.2.3/8" is not a valid CIDR`},
		{"inner: {count: many}", `inner.count (line 1): "many" is not an integer`},
		{"on: maybe", `on (line 1): "maybe" is not a boolean`},
		{"inner: [1]", "inner (line 1): expected a mapping, got a list"},
		{"list: x", `list (line 1): expected a list, got "x"`},
		{"inner: {name: \"${NOPE_NOT_SET_SY}\"}", "environment variable NOPE_NOT_SET_SY is not set"},
		{"inner: {name: \"${bad-name}\"}", `invalid environment variable name "bad-name"`},
		{"inner: {name: \"${OPEN\"}", "unterminated ${"},
		{"on: true\non: false", "on (line 2): duplicate key"},
	} {
		var o outer
		err := Decode([]byte(tc.doc), &o)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Decode(%q) = %v, want %q", tc.doc, err, tc.want)
		}
	}
}

func TestDecodeEmptyDocumentKeepsDefaults(t *testing.T) {
	o := outer{On: true}
	if err := Decode([]byte("# nothing\n"), &o); err != nil || !o.On {
		t.Fatalf("%v %+v", err, o)
	}
}
