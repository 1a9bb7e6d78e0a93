package provision

import (
	"context"
	"fmt"

	"github.com/rivetmetal/rivet/conductor/images"
	"github.com/rivetmetal/rivet/conductor/statemachine"
	"github.com/rivetmetal/rivet/conductor/store"
)

// resolveImage makes sure a node whose image the conductor serves (a
// file:// source, or image_download_source "http"/"local") has it cached
// and verified, and points instance_info at that copy the way Ironic does:
// image_url becomes the conductor's URL of the copy, and the checksum the
// copy was verified with replaces image_checksum, so that a checksum-file
// URL need not name the cached file. Other images pass through untouched.
func (e *Engine) resolveImage(ctx context.Context, t *target) error {
	if e.cfg.ImageCache == nil || !images.NeedsCache(t.node.InstanceInfo) {
		return nil
	}
	r, err := e.cfg.ImageCache.Resolve(ctx, t.node.InstanceInfo, e.cfg.APIURL)
	if err != nil {
		return fmt.Errorf("node %s: cache the image: %w", t.node.UUID, err)
	}
	n, err := e.update(ctx, t.node.UUID, statemachine.Deploying, func(_ store.Tx, n *store.Node) error {
		n.InstanceInfo["image_url"] = r.URL
		n.InstanceInfo["image_os_hash_algo"] = r.Algo
		n.InstanceInfo["image_os_hash_value"] = r.Checksum
		delete(n.InstanceInfo, "image_checksum")
		return nil
	})
	if err != nil {
		return err
	}
	t.node = n
	e.log.Info("image cached by the conductor", "node", n.UUID, "url", r.URL, "checksum", r.Algo)
	return nil
}
