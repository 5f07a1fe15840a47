// Package liveinit is the init of a livefs live system: run as PID 1 from
// the initramfs, it finds the boot medium, serves the root file system
// from the medium's bundles through a livefs server process, pivots into
// it and executes the real init. Its shutdown half, run at
// /run/initramfs/shutdown, stops the server and releases the medium.
package liveinit

import (
	"fmt"
	"path"
	"strconv"
	"strings"
	"time"
)

// Params are the boot-line parameters the init reads.
type Params struct {
	// From names the medium: a device (/dev/sdb1), LABEL=x, UUID=x, a
	// directory on any medium holding the livefs tree (/boot/livefs), or
	// DEVICE:/dir. Empty: the first medium with /livefs.
	From string
	// Changes is "" (RAM), "persistent" (livefs/changes on the medium) or
	// a directory on the medium.
	Changes  string
	Clean    bool     // wipe persistent changes first
	Load     []string // bundles from livefs/optional to add, by name pattern
	NoLoad   []string // bundles from livefs/modules to leave out
	ToRAM    bool     // copy the bundles into RAM and release the medium
	Debug    bool     // say each step; a shell on failure if there is one
	Wait     time.Duration
	Init     string   // init=, default /sbin/init
	InitArgs []string // boot-line words the kernel did not use
}

// DefaultWait bounds the wait for the boot medium's device.
const DefaultWait = 20 * time.Second

// ParseParams reads a kernel command line.
func ParseParams(cmdline string) (Params, error) {
	p := Params{Wait: DefaultWait, Init: "/sbin/init"}
	for _, word := range splitCmdline(cmdline) {
		key, value, hasValue := strings.Cut(word, "=")
		switch key {
		case "livefs.from":
			p.From = value
		case "livefs.changes":
			if !hasValue || value == "" {
				value = "persistent"
			}
			if value == "ram" {
				value = ""
			}
			p.Changes = value
		case "livefs.clean":
			p.Clean = true
		case "livefs.load":
			p.Load = append(p.Load, splitList(value)...)
		case "livefs.noload":
			p.NoLoad = append(p.NoLoad, splitList(value)...)
		case "livefs.toram":
			p.ToRAM = true
		case "livefs.debug":
			p.Debug = true
		case "livefs.wait":
			s, err := strconv.ParseFloat(value, 64)
			if err != nil || s < 0 {
				return p, fmt.Errorf("livefs.wait=%s: want seconds", value)
			}
			p.Wait = time.Duration(s * float64(time.Second))
		case "init":
			if !path.IsAbs(value) {
				return p, fmt.Errorf("init=%s: want an absolute path", value)
			}
			p.Init = value
		case "single", "emergency", "rescue", "1", "2", "3", "4", "5", "s", "S", "-s":
			// Runlevel words, which the kernel passes on to init.
			p.InitArgs = append(p.InitArgs, word)
		}
	}
	if p.Changes != "" && p.Changes != "persistent" && !path.IsAbs(p.Changes) {
		return p, fmt.Errorf("livefs.changes=%s: want persistent, ram or an absolute path on the medium", p.Changes)
	}
	return p, nil
}

// splitCmdline splits on spaces, keeping double-quoted values whole
// (name="a b"), as the kernel does.
func splitCmdline(s string) []string {
	var words []string
	var cur strings.Builder
	quoted, inWord := false, false
	for _, r := range s {
		switch {
		case r == '"':
			quoted = !quoted
			inWord = true
		case (r == ' ' || r == '\t' || r == '\n') && !quoted:
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		default:
			cur.WriteRune(r)
			inWord = true
		}
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words
}

func splitList(s string) []string {
	return strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ';' })
}

// MatchBundle says whether a bundle file name matches a pattern: a shell
// glob when it has glob characters, else a substring (Slax's noload=xorg
// leaves out 02-xorg.sb).
func MatchBundle(pattern, name string) bool {
	if strings.ContainsAny(pattern, "*?[") {
		ok, err := path.Match(pattern, name)
		return err == nil && ok
	}
	return strings.Contains(name, pattern)
}

// MediumSpec is a parsed livefs.from.
type MediumSpec struct {
	Device string // /dev/... or "" for any
	Label  string
	UUID   string
	Dir    string // the livefs tree on the medium, default /livefs
}

// ParseFrom interprets livefs.from.
func ParseFrom(from string) MediumSpec {
	spec := MediumSpec{Dir: "/livefs"}
	switch {
	case from == "":
	case strings.HasPrefix(from, "LABEL="):
		spec.Label, spec.Dir = cutDir(strings.TrimPrefix(from, "LABEL="), spec.Dir)
	case strings.HasPrefix(from, "UUID="):
		spec.UUID, spec.Dir = cutDir(strings.TrimPrefix(from, "UUID="), spec.Dir)
		spec.UUID = strings.ToLower(spec.UUID)
	case strings.HasPrefix(from, "/dev/"):
		spec.Device, spec.Dir = cutDir(from, spec.Dir)
	default:
		spec.Dir = path.Clean("/" + from)
	}
	return spec
}

// cutDir splits "X:/dir" into X and /dir.
func cutDir(s, def string) (string, string) {
	if x, dir, ok := strings.Cut(s, ":"); ok && strings.HasPrefix(dir, "/") {
		return x, path.Clean(dir)
	}
	return s, def
}

func (s MediumSpec) String() string {
	var what string
	switch {
	case s.Device != "":
		what = s.Device
	case s.Label != "":
		what = "the file system labelled " + s.Label
	case s.UUID != "":
		what = "the file system with UUID " + s.UUID
	default:
		what = "any block device"
	}
	return fmt.Sprintf("%s holding %s/modules", what, s.Dir)
}
