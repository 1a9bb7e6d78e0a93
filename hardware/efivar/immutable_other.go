//go:build !linux

package efivar

// makeMutable does nothing off Linux, where there is no efivarfs.
func makeMutable(string) error { return nil }
