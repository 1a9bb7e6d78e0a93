package api

import (
	"net/http"
	"regexp"
	"slices"

	"github.com/rivetmetal/rivet/conductor/errdefs"
	"github.com/rivetmetal/rivet/conductor/store"
)

// minorTraits is the version of the node traits API.
const minorTraits = 37

// maxTraits is Ironic's limit of traits per node.
const maxTraits = 50

// traitRE accepts custom traits (CUSTOM_ and upper-case letters, digits,
// underscores) and names shaped like os-traits' standard ones; the
// standard list itself is not checked.
var traitRE = regexp.MustCompile(`^[A-Z][A-Z0-9_]{0,254}$`)

func checkTrait(t string) error {
	if !traitRE.MatchString(t) {
		return errdefs.InvalidArgument("Invalid trait %q: a trait is a standard trait or starts with CUSTOM_, of upper-case letters, digits and underscores, at most 255 characters.", t)
	}
	return nil
}

// traitsBody is the body of PUT /v1/nodes/{ident}/traits.
type traitsBody struct {
	Traits []string `json:"traits"`
}

// nodeTraits serves the node traits API (1.37): GET, PUT (replace the
// list, or add one with /{trait}) and DELETE (all, or one with /{trait}).
func (s *Server) nodeTraits(w http.ResponseWriter, r *http.Request, v version) {
	if v.minor < minorTraits {
		s.writeError(w, r, notAcceptable())
		return
	}
	ident, trait := r.PathValue("ident"), r.PathValue("trait")
	if r.Method == http.MethodGet {
		n, err := s.cfg.Store.GetNode(r.Context(), ident)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		traits := n.Traits
		if traits == nil {
			traits = []string{}
		}
		writeJSON(w, http.StatusOK, map[string]any{"traits": traits})
		return
	}
	var replace []string
	if r.Method == http.MethodPut && trait == "" {
		var body traitsBody
		if err := decodeBody(w, r, maxBody, &body); err != nil {
			s.writeError(w, r, err)
			return
		}
		replace = []string{}
		for _, t := range body.Traits {
			if err := checkTrait(t); err != nil {
				s.writeError(w, r, err)
				return
			}
			if !slices.Contains(replace, t) {
				replace = append(replace, t)
			}
		}
	}
	if trait != "" && r.Method == http.MethodPut {
		if err := checkTrait(trait); err != nil {
			s.writeError(w, r, err)
			return
		}
	}
	err := s.cfg.Store.WithNodeLock(r.Context(), ident, func(tx store.Tx) error {
		n := tx.Node()
		switch {
		case r.Method == http.MethodPut && trait == "":
			n.Traits = replace
		case r.Method == http.MethodPut:
			if !slices.Contains(n.Traits, trait) {
				n.Traits = append(n.Traits, trait)
			}
		case trait == "":
			n.Traits = nil
		default:
			i := slices.Index(n.Traits, trait)
			if i < 0 {
				return errdefs.NotFound("Node %s doesn't have a trait '%s'", n.UUID, trait)
			}
			n.Traits = slices.Delete(n.Traits, i, i+1)
		}
		if len(n.Traits) > maxTraits {
			return errdefs.InvalidArgument("Could not modify traits for node %s as it would exceed the maximum number of traits per node (%d vs. %d)",
				n.UUID, len(n.Traits), maxTraits)
		}
		if len(n.Traits) == 0 {
			n.Traits = nil
		}
		return nil
	})
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
