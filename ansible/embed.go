// Package ansible holds cairn's playbook and roles; Files embeds them so
// `cairn provision` can write them out and run them.
package ansible

import "embed"

// Files: ansible.cfg, site.yml, destroy.yml and roles/.
//
//go:embed ansible.cfg site.yml destroy.yml roles
var Files embed.FS
