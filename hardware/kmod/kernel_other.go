//go:build !linux

package kmod

import "errors"

func kernelInitModule(path, params string) error { return errors.ErrUnsupported }

func procModules() []string { return []string{} }

func release() (string, error) { return "", errors.ErrUnsupported }
