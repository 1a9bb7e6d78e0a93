package agent

import (
	"strings"

	"github.com/rivetmetal/rivet/imagewriter"
	"github.com/rivetmetal/rivet/wire"
)

// md5Allowed reports whether MD5 image checksums are accepted: only when
// the operator allowed them (rivet-allow-md5-checksum), and never when
// Ironic forbids them (lookup's agent_md5_checksum_enable=false, from its
// [agent]allow_md5_checksum). Ironic deprecated MD5, and its default of
// allowing it is not taken as an explicit choice.
func (a *Agent) md5Allowed() bool {
	if !a.cfg.AllowMD5 {
		return false
	}
	cfg := a.nodes.lookupConfig()
	return cfg.AgentMD5ChecksumEnable == nil || *cfg.AgentMD5ChecksumEnable
}

// checkMD5 refuses, before any work starts, image_info whose checksum is
// MD5 (os_hash_algo md5, or a legacy checksum of 32 hex digits) unless MD5
// is allowed. A checksum file URL is checked once fetched.
func checkMD5(info *wire.ImageInfo, allowed bool) error {
	if allowed {
		return nil
	}
	md5 := false
	if info.OSHashAlgo != "" && info.OSHashVal != "" {
		md5 = strings.EqualFold(strings.TrimSpace(info.OSHashAlgo), "md5")
	} else if c := strings.TrimSpace(info.Checksum); !imagewriter.IsChecksumURL(c) {
		md5 = len(c) == 32
	}
	if md5 {
		return ErrInvalidParams("image %s: MD5 checksums are refused (Ironic deprecated them): give os_hash_algo and os_hash_value with sha256 or sha512, or start the agent with rivet-allow-md5-checksum", info.ID)
	}
	return nil
}
