package cow

// WaitSwept waits for the deletion of the entries discarded so far.
func (c *Changes) WaitSwept() { c.sweeper.Wait() }
