package union

// ServerWrites returns how many WRITE requests the server has served: the
// kernel sends none for files open in passthrough mode.
func ServerWrites(u *Union) uint64 { return u.serverWrites.Load() }

// Passthrough reports whether Mount found passthrough to work.
func Passthrough(u *Union) bool { return u.passthrough.Load() }

// BeforeStore makes every push of a file's content into the kernel's
// cache run hook between reading the file and storing it; nil removes it.
func BeforeStore(hook func()) {
	if hook == nil {
		beforeStore.Store(nil)
		return
	}
	beforeStore.Store(&hook)
}

// MinimalACL is minimalACL.
var MinimalACL = minimalACL
