package union

import "time"

// ServerWrites returns how many WRITE requests the server has served: the
// kernel sends none for files open in passthrough mode.
func ServerWrites(u *Union) uint64 { return u.serverWrites.Load() }

// Passthrough reports whether Mount found passthrough to work.
func Passthrough(u *Union) bool { return u.passthrough.Load() }

// DelayPushes makes every push of a file's content into the kernel's
// cache wait d before the store, widening the window in which it races
// with a copy-up.
func DelayPushes(d time.Duration) { pushDelay.Store(int64(d)) }
