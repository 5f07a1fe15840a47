package cow

// WaitSwept waits for the removal of the directories discarded so far.
func (c *Changes) WaitSwept() { c.sweeper.Wait() }
