package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/cairn-pki/cairn/cluster"
	"github.com/cairn-pki/cairn/internal/fsutil"
	"github.com/cairn-pki/cairn/site"
)

func newInitCmd(g *globals) *cobra.Command {
	var dir, sites string
	var force bool
	cmd := &cobra.Command{
		Use:   "init [--dir D] [--sites a,b,c]",
		Short: "Write a commented cairn.yaml with lab defaults",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			names, data, err := specTemplate(sites)
			if err != nil {
				return err
			}
			path := filepath.Join(dir, cluster.DefaultFile)
			if old, err := os.ReadFile(path); err == nil {
				if bytes.Equal(old, data) {
					fmt.Fprintf(cmd.OutOrStdout(), "%s is up to date\n", path)
					return nil
				}
				if !force {
					return fmt.Errorf("%s exists and differs: edit it, remove it, or pass --force to overwrite", path)
				}
			}
			if err := fsutil.WriteFileAtomic(path, data, 0o644); err != nil {
				return fmt.Errorf("write %s: %w", path, err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "wrote %s (%d sites: %s)\nnext: cd %s && cairn validate && cairn pki init\n",
				path, len(names), strings.Join(names, ", "), dir)
			return nil
		},
	}
	cmd.Flags().StringVar(&dir, "dir", ".", "directory to write cairn.yaml into")
	cmd.Flags().StringVar(&sites, "sites", "", "comma-separated site names (default a,b,c)")
	cmd.Flags().BoolVar(&force, "force", false, "overwrite an existing, different cairn.yaml")
	return cmd
}

// specTemplate renders the commented lab spec for --sites (default a,b,c)
// and refuses one that would not validate (a bad site name).
func specTemplate(sites string) ([]string, []byte, error) {
	names := cluster.DefaultSiteNames
	if sites != "" {
		names = strings.Split(sites, ",")
	}
	data, err := cluster.Template(names)
	if err != nil {
		return nil, nil, err
	}
	if _, errs := cluster.ParseAndValidate(data); len(errs) > 0 {
		return nil, nil, fmt.Errorf("--sites %q: %s: %s", sites, errs[0].Path, errs[0].Msg)
	}
	return names, data, nil
}

func newValidateCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "validate [-f cairn.yaml]",
		Short: "Check the spec; print every problem with its field path",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			spec, err := g.loadSpec()
			if err == nil {
				// What a Boulder service would refuse at start, refused now.
				if cerr := site.Check(spec); cerr != nil {
					err = cerr
				}
			}
			if g.output == "json" {
				problems := []string{}
				if ve, ok := err.(cluster.Errors); ok {
					for _, e := range ve {
						problems = append(problems, e.Error())
					}
				} else if err != nil {
					return err
				}
				if perr := printJSON(cmd.OutOrStdout(), map[string]any{"file": g.config, "valid": err == nil, "problems": problems}); perr != nil {
					return perr
				}
				return err
			}
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s is valid: cluster %s, %d sites (%s), ACME name %s\n",
				g.config, spec.Name, len(spec.Sites), strings.Join(spec.SiteNames(), ", "), spec.ACME.Name)
			return nil
		},
	}
}
