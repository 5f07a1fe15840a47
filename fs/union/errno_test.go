package union_test

import (
	"errors"
	"syscall"
)

func errorsIsEIO(err error) bool { return errors.Is(err, syscall.EIO) }
