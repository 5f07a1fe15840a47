package union_test

import (
	"testing"

	"github.com/livefs/livefs/fs/union"
)

// TestMinimalACL: an access ACL of the owner, group and other entries
// alone says a mode; anything else (named entries, a mask, repeated or
// unknown tags, bad permissions or version, a short value) does not.
func TestMinimalACL(t *testing.T) {
	entry := func(tag, perm uint16) []byte {
		return []byte{byte(tag), byte(tag >> 8), byte(perm), byte(perm >> 8), 0xff, 0xff, 0xff, 0xff}
	}
	acl := func(entries ...[]byte) []byte {
		v := []byte{2, 0, 0, 0}
		for _, e := range entries {
			v = append(v, e...)
		}
		return v
	}
	for _, tc := range []struct {
		name     string
		value    []byte
		wantMode uint32
		wantOK   bool
	}{
		{"0644", acl(entry(0x01, 6), entry(0x04, 4), entry(0x20, 4)), 0o644, true},
		{"0751", acl(entry(0x01, 7), entry(0x04, 5), entry(0x20, 1)), 0o751, true},
		{"named user", acl(entry(0x01, 6), entry(0x02, 7), entry(0x04, 4), entry(0x10, 7), entry(0x20, 4)), 0, false},
		{"mask for other", acl(entry(0x01, 6), entry(0x04, 4), entry(0x10, 4)), 0, false},
		{"owner twice", acl(entry(0x01, 6), entry(0x01, 4), entry(0x20, 4)), 0, false},
		{"permission 8", acl(entry(0x01, 8), entry(0x04, 4), entry(0x20, 4)), 0, false},
		{"version 1", append([]byte{1}, acl(entry(0x01, 6), entry(0x04, 4), entry(0x20, 4))[1:]...), 0, false},
		{"two entries", acl(entry(0x01, 6), entry(0x04, 4)), 0, false},
		{"empty", nil, 0, false},
	} {
		gotMode, gotOK := union.MinimalACL(tc.value)
		if gotMode != tc.wantMode || gotOK != tc.wantOK {
			t.Errorf("%s: got %o, %v; want %o, %v", tc.name, gotMode, gotOK, tc.wantMode, tc.wantOK)
		}
	}
}
