// Package auth authenticates and authorises requests to the conductor's
// API as Ironic's auth_strategy does: noauth, or http_basic against an
// Apache htpasswd user file with bcrypt entries only (the file Ironic and
// Metal3's ironic-image use), with two roles from an optional roles file
// (admin: everything; reader: GET and HEAD only). Guard is the HTTP
// middleware; Verifier checks credentials, caches verified ones briefly
// and re-reads the files when they change or on Reload (SIGHUP).
//
// The user file, as `htpasswd -B` writes it:
//
//	# comments and blank lines are ignored
//	alice:$2y$10$...
//	bob:$2y$10$...
//
// The roles file, one USER:ROLE a line; users it does not name are
// readers (without a roles file every user is an admin):
//
//	alice:admin
//	bob:reader
//
// The routes nodes use without credentials are listed at Public.
package auth
