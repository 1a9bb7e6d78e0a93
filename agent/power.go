package agent

// PowerController performs the machine's own power actions.
type PowerController interface {
	// Sync flushes filesystem buffers (and in the ramdisk drops caches).
	Sync()
	// PowerOff turns the machine off; on success it does not return.
	PowerOff() error
	// Reboot restarts the machine; on success it does not return.
	Reboot() error
}
