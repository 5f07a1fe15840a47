package liveinit

import (
	"reflect"
	"testing"
	"time"
)

func TestParseParams(t *testing.T) {
	def := Params{Wait: DefaultWait, Init: "/sbin/init"}
	with := func(f func(p *Params)) Params {
		p := def
		f(&p)
		return p
	}
	tests := []struct {
		cmdline string
		want    Params
	}{
		{"console=ttyS0 quiet", def},
		{"livefs.changes=persistent", with(func(p *Params) { p.Changes = "persistent" })},
		{"livefs.changes", with(func(p *Params) { p.Changes = "persistent" })},
		{"livefs.changes=ram", def},
		{"livefs.changes=/slax/changes livefs.clean", with(func(p *Params) { p.Changes = "/slax/changes"; p.Clean = true })},
		{"livefs.from=LABEL=LIVE livefs.toram livefs.debug", with(func(p *Params) { p.From = "LABEL=LIVE"; p.ToRAM = true; p.Debug = true })},
		{"livefs.load=xorg,firefox livefs.noload=02 livefs.noload=devel", with(func(p *Params) {
			p.Load = []string{"xorg", "firefox"}
			p.NoLoad = []string{"02", "devel"}
		})},
		{"livefs.wait=2.5", with(func(p *Params) { p.Wait = 2500 * time.Millisecond })},
		{`init=/bin/sh single livefs.from="/my dir"`, with(func(p *Params) { p.Init = "/bin/sh"; p.InitArgs = []string{"single"}; p.From = "/my dir" })},
	}
	for _, tt := range tests {
		got, err := ParseParams(tt.cmdline)
		if err != nil {
			t.Errorf("ParseParams(%q): %v", tt.cmdline, err)
			continue
		}
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("ParseParams(%q):\n got %+v\nwant %+v", tt.cmdline, got, tt.want)
		}
	}
	for _, bad := range []string{"livefs.wait=soon", "livefs.wait=-1", "init=sbin/init", "livefs.changes=relative/dir"} {
		if _, err := ParseParams(bad); err == nil {
			t.Errorf("ParseParams(%q): no error", bad)
		}
	}
}

func TestParseFrom(t *testing.T) {
	tests := []struct {
		from string
		want MediumSpec
	}{
		{"", MediumSpec{Dir: "/livefs"}},
		{"/dev/sdb1", MediumSpec{Device: "/dev/sdb1", Dir: "/livefs"}},
		{"/dev/sdb1:/boot/live", MediumSpec{Device: "/dev/sdb1", Dir: "/boot/live"}},
		{"LABEL=LIVE", MediumSpec{Label: "LIVE", Dir: "/livefs"}},
		{"LABEL=LIVE:/x/", MediumSpec{Label: "LIVE", Dir: "/x"}},
		{"UUID=ABCD-1234", MediumSpec{UUID: "abcd-1234", Dir: "/livefs"}},
		{"/slax", MediumSpec{Dir: "/slax"}},
		{"slax", MediumSpec{Dir: "/slax"}},
	}
	for _, tt := range tests {
		if got := ParseFrom(tt.from); got != tt.want {
			t.Errorf("ParseFrom(%q) = %+v, want %+v", tt.from, got, tt.want)
		}
	}
}

func TestMatchBundle(t *testing.T) {
	tests := []struct {
		pattern, name string
		want          bool
	}{
		{"xorg", "02-xorg.sb", true},
		{"xorg", "03-firefox.sb", false},
		{"0[23]-*", "02-xorg.sb", true},
		{"0[23]-*", "04-devel.sb", false},
		{"*.sb", "01-core.sb", true},
		{"[", "01-core.sb", false}, // a bad glob matches nothing
	}
	for _, tt := range tests {
		if got := MatchBundle(tt.pattern, tt.name); got != tt.want {
			t.Errorf("MatchBundle(%q, %q) = %v, want %v", tt.pattern, tt.name, got, tt.want)
		}
	}
}
