package xattrat

// UseProc makes the package use /proc/self/fd paths (as on kernels before
// 6.13) or the *xattrat calls again.
func UseProc(on bool) { unsupported.Store(on) }
