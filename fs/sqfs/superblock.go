package sqfs

import (
	"encoding/binary"
	"fmt"
	"math/bits"
	"strings"
	"time"
)

const (
	superblockSize = 96
	magic          = 0x73717368 // "hsqs"
	metaBlockSize  = 8192       // uncompressed size of a full metadata block
	noTable        = ^uint64(0) // table start of an absent optional table
	noFragment     = ^uint32(0)
	noXattr        = ^uint32(0)
	minBlockLog    = 12 // 4 KiB
	maxBlockLog    = 20 // 1 MiB
)

// Compressor identifies the codec an image was made with.
type Compressor uint16

const (
	Gzip Compressor = 1
	LZMA Compressor = 2
	LZO  Compressor = 3
	XZ   Compressor = 4
	LZ4  Compressor = 5
	Zstd Compressor = 6
)

func (c Compressor) String() string {
	switch c {
	case Gzip:
		return "gzip"
	case LZMA:
		return "lzma"
	case LZO:
		return "lzo"
	case XZ:
		return "xz"
	case LZ4:
		return "lz4"
	case Zstd:
		return "zstd"
	}
	return fmt.Sprintf("compressor(%d)", uint16(c))
}

// Flags are the superblock flags.
type Flags uint16

const (
	FlagUncompressedInodes    Flags = 0x0001
	FlagUncompressedData      Flags = 0x0002
	FlagCheck                 Flags = 0x0004
	FlagUncompressedFragments Flags = 0x0008
	FlagNoFragments           Flags = 0x0010
	FlagAlwaysFragments       Flags = 0x0020
	FlagDuplicates            Flags = 0x0040
	FlagExportable            Flags = 0x0080
	FlagUncompressedXattrs    Flags = 0x0100
	FlagNoXattrs              Flags = 0x0200
	FlagCompressorOptions     Flags = 0x0400
	FlagUncompressedIDs       Flags = 0x0800
)

var flagNames = []struct {
	f    Flags
	name string
}{
	{FlagUncompressedInodes, "uncompressed-inodes"},
	{FlagUncompressedData, "uncompressed-data"},
	{FlagCheck, "check"},
	{FlagUncompressedFragments, "uncompressed-fragments"},
	{FlagNoFragments, "no-fragments"},
	{FlagAlwaysFragments, "always-fragments"},
	{FlagDuplicates, "duplicates"},
	{FlagExportable, "exportable"},
	{FlagUncompressedXattrs, "uncompressed-xattrs"},
	{FlagNoXattrs, "no-xattrs"},
	{FlagCompressorOptions, "compressor-options"},
	{FlagUncompressedIDs, "uncompressed-ids"},
}

// Names lists the set flags by name.
func (f Flags) Names() []string {
	var out []string
	for _, n := range flagNames {
		if f&n.f != 0 {
			out = append(out, n.name)
		}
	}
	return out
}

func (f Flags) String() string { return strings.Join(f.Names(), ",") }

// Superblock is the decoded, validated image header.
type Superblock struct {
	InodeCount     uint32
	ModTime        time.Time
	BlockSize      uint32
	FragmentCount  uint32
	Compressor     Compressor
	BlockLog       uint16
	Flags          Flags
	IDCount        uint16
	VersionMajor   uint16
	VersionMinor   uint16
	RootInode      uint64 // inode reference of the root directory
	BytesUsed      uint64
	IDTable        uint64
	XattrIDTable   uint64
	InodeTable     uint64
	DirectoryTable uint64
	FragmentTable  uint64
	ExportTable    uint64
}

// HasExportTable reports whether the image has an NFS export table.
func (s *Superblock) HasExportTable() bool { return s.ExportTable != noTable }

// HasXattrs reports whether the image has an xattr table.
func (s *Superblock) HasXattrs() bool { return s.XattrIDTable != noTable }

func parseSuperblock(b []byte) Superblock {
	le := binary.LittleEndian
	return Superblock{
		InodeCount:     le.Uint32(b[4:]),
		ModTime:        time.Unix(int64(le.Uint32(b[8:])), 0).UTC(),
		BlockSize:      le.Uint32(b[12:]),
		FragmentCount:  le.Uint32(b[16:]),
		Compressor:     Compressor(le.Uint16(b[20:])),
		BlockLog:       le.Uint16(b[22:]),
		Flags:          Flags(le.Uint16(b[24:])),
		IDCount:        le.Uint16(b[26:]),
		VersionMajor:   le.Uint16(b[28:]),
		VersionMinor:   le.Uint16(b[30:]),
		RootInode:      le.Uint64(b[32:]),
		BytesUsed:      le.Uint64(b[40:]),
		IDTable:        le.Uint64(b[48:]),
		XattrIDTable:   le.Uint64(b[56:]),
		InodeTable:     le.Uint64(b[64:]),
		DirectoryTable: le.Uint64(b[72:]),
		FragmentTable:  le.Uint64(b[80:]),
		ExportTable:    le.Uint64(b[88:]),
	}
}

// validate checks the superblock against itself and the image size. It does
// what the kernel's squashfs_fill_super does, and a little more.
func (r *Reader) validateSuperblock(size int64) error {
	s := &r.sb
	const where = "superblock"
	if s.VersionMajor != 4 || s.VersionMinor != 0 {
		return r.unsupported(where, "squashfs version %d.%d (only 4.0 is supported)", s.VersionMajor, s.VersionMinor)
	}
	if s.BlockLog < minBlockLog || s.BlockLog > maxBlockLog {
		return r.corrupt(where, "block log %d outside %d..%d", s.BlockLog, minBlockLog, maxBlockLog)
	}
	if s.BlockSize != 1<<s.BlockLog || bits.OnesCount32(s.BlockSize) != 1 {
		return r.corrupt(where, "block size %d does not match block log %d", s.BlockSize, s.BlockLog)
	}
	if s.BytesUsed < superblockSize || s.BytesUsed > uint64(size) {
		return r.corrupt(where, "bytes used %d, but the image has %d bytes (truncated?)", s.BytesUsed, size)
	}
	if s.InodeCount == 0 {
		return r.corrupt(where, "inode count is zero")
	}
	if s.IDCount == 0 {
		return r.corrupt(where, "id count is zero")
	}
	// Tables are laid out in this order; each must lie inside the image.
	ordered := []struct {
		name  string
		start uint64
	}{
		{"inode table", s.InodeTable},
		{"directory table", s.DirectoryTable},
	}
	for _, t := range ordered {
		if t.start < superblockSize || t.start >= s.BytesUsed {
			return r.corrupt(where, "%s start %d outside the image (%d bytes used)", t.name, t.start, s.BytesUsed)
		}
	}
	if s.InodeTable >= s.DirectoryTable {
		return r.corrupt(where, "inode table start %d is not before directory table start %d", s.InodeTable, s.DirectoryTable)
	}
	for _, t := range []struct {
		name     string
		start    uint64
		optional bool
	}{
		{"id table", s.IDTable, false},
		{"xattr id table", s.XattrIDTable, true},
		{"fragment table", s.FragmentTable, true},
		{"export table", s.ExportTable, true},
	} {
		if t.optional && t.start == noTable {
			continue
		}
		if t.start < s.DirectoryTable || t.start >= s.BytesUsed {
			return r.corrupt(where, "%s start %d outside %d..%d", t.name, t.start, s.DirectoryTable, s.BytesUsed)
		}
	}
	if s.FragmentCount > 0 && s.FragmentTable == noTable {
		return r.corrupt(where, "%d fragments but no fragment table", s.FragmentCount)
	}
	if s.RootInode>>16 >= s.DirectoryTable-s.InodeTable {
		return r.corrupt(where, "root inode reference %#x outside the inode table", s.RootInode)
	}
	return nil
}
