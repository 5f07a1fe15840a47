package cow

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// Sync makes everything written to the changes layer durable (syncfs of
// its file system): what a shutdown asks before the medium goes away.
func (c *Changes) Sync() error {
	// syncfs needs a real descriptor; c.fd is O_PATH.
	fd, err := unix.Openat(c.fd, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("%s: %w", c.Dir, err)
	}
	defer unix.Close(fd)
	if err := unix.Syncfs(fd); err != nil {
		return fmt.Errorf("syncfs %s: %w", c.Dir, err)
	}
	return nil
}
