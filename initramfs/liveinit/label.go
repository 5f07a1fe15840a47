package liveinit

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"strings"
)

// FSIdentity is what a file system says of itself: its type, label and
// UUID, in the forms blkid prints.
type FSIdentity struct {
	Type, Label, UUID string
}

// Identify reads the superblock of the common medium file systems (ext2/3/4,
// FAT, ISO 9660). It returns ok=false when none is recognised.
func Identify(r io.ReaderAt) (id FSIdentity, ok bool) {
	var ext [1024]byte
	if _, err := r.ReadAt(ext[:], 1024); err == nil && binary.LittleEndian.Uint16(ext[0x38:]) == 0xEF53 {
		u := ext[0x68:0x78]
		return FSIdentity{Type: "ext4", Label: cString(ext[0x78:0x88]),
			UUID: fmt.Sprintf("%x-%x-%x-%x-%x", u[0:4], u[4:6], u[6:8], u[8:10], u[10:16])}, true
	}
	var iso [2048]byte
	if _, err := r.ReadAt(iso[:], 16*2048); err == nil && iso[0] == 1 && string(iso[1:6]) == "CD001" {
		// blkid's UUID of an ISO 9660 volume is its creation time.
		c := iso[813:829]
		uuid := fmt.Sprintf("%s-%s-%s-%s-%s-%s-%s", c[0:4], c[4:6], c[6:8], c[8:10], c[10:12], c[12:14], c[14:16])
		return FSIdentity{Type: "iso9660", Label: strings.TrimRight(string(iso[40:72]), " "), UUID: uuid}, true
	}
	var boot [512]byte
	if _, err := r.ReadAt(boot[:], 0); err == nil && boot[510] == 0x55 && boot[511] == 0xAA {
		serialAt, labelAt := -1, 0
		switch {
		case string(boot[0x52:0x57]) == "FAT32":
			serialAt, labelAt = 0x43, 0x47
		case string(boot[0x36:0x39]) == "FAT":
			serialAt, labelAt = 0x27, 0x2B
		}
		if serialAt >= 0 {
			serial := binary.LittleEndian.Uint32(boot[serialAt:])
			label := strings.TrimRight(string(boot[labelAt:labelAt+11]), " ")
			if label == "NO NAME" {
				label = ""
			}
			return FSIdentity{Type: "vfat", Label: label, UUID: fmt.Sprintf("%04X-%04X", serial>>16, serial&0xffff)}, true
		}
	}
	return FSIdentity{}, false
}

func cString(b []byte) string {
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	return string(b)
}
