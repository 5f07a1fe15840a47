package sqfs

import "io/fs"

// Walk visits every inode of the image depth-first, in listing order,
// starting with the root as ".". fn is called once per entry with the slash
// separated path; when a directory cannot be listed, or an entry's inode
// cannot be read, fn is called again (or only) with the error and may return
// it to stop the walk or nil to go on with the next entry. Returning
// fs.SkipDir from fn for a directory skips its contents; fs.SkipAll stops
// the walk and Walk returns nil.
//
// A directory inode is a tree node in a valid image and appears once; a
// corrupt image may link directories into cycles. Walk reports a directory
// inode reached a second time as an ErrCorrupt error to fn instead of
// descending into it, so it always terminates.
func (r *Reader) Walk(fn func(path string, ino *Inode, err error) error) error {
	return r.walkTree(".", r.root, fn)
}

// walkTree walks start (a directory's tree, or a single entry), reported
// as path; fs.SkipDir or fs.SkipAll from fn ends it without an error.
func (r *Reader) walkTree(path string, start *Inode, fn func(string, *Inode, error) error) error {
	var err error
	if start.Type == TypeDir {
		err = r.walkDir(path, start, map[uint64]bool{start.Ref: true}, fn)
	} else {
		err = fn(path, start, nil)
	}
	if err == fs.SkipAll || err == fs.SkipDir {
		return nil
	}
	return err
}

func (r *Reader) walkDir(path string, dir *Inode, seen map[uint64]bool, fn func(string, *Inode, error) error) error {
	if err := fn(path, dir, nil); err != nil {
		if err == fs.SkipDir {
			return nil
		}
		return err
	}
	ents, err := r.ReadDirInode(dir)
	if err != nil {
		return fn(path, dir, err)
	}
	for _, e := range ents {
		p := e.Name
		if path != "." {
			p = path + "/" + e.Name
		}
		child, err := r.entryInode(e)
		if err == nil && child.Type == TypeDir {
			if seen[child.Ref] {
				err = r.corrupt("directory entry "+p, "directory inode %d (reference %#x) is reached a second time", child.Number, child.Ref)
			}
			seen[child.Ref] = true
		}
		if err != nil {
			if err := fn(p, child, err); err != nil {
				return err
			}
			continue
		}
		if child.Type == TypeDir {
			err = r.walkDir(p, child, seen, fn)
		} else {
			err = fn(p, child, nil)
		}
		if err == fs.SkipDir && child.Type != TypeDir {
			return nil // skip the rest of this directory, as fs.WalkDir does
		}
		if err != nil && err != fs.SkipDir {
			return err
		}
	}
	return nil
}
