package provision

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclparse"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"

	"github.com/cairn-pki/cairn/internal/testenv"
)

// The Terraform modules, each in the standard layout; true: one cairn
// drives, which honours the output contract (false: a building block).
var modules = map[string]bool{"aws/modules/site": true, "aws/modules/cluster": true, "aws/modules/network": false, "aws/modules/host": false, "aws/modules/firewall": false, "aws/examples/three-regions": true, "local": true, "nspawn": true}

func terraformDir() string { return filepath.Join("..", "terraform") }

// module parses every .tf file of one module.
func module(t *testing.T, dir string) []*hclsyntax.Body {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(terraformDir(), dir, "*.tf"))
	if len(files) == 0 {
		t.Fatalf("%s: no .tf files", dir)
	}
	p := hclparse.NewParser()
	var bodies []*hclsyntax.Body
	for _, f := range files {
		file, diags := p.ParseHCLFile(f)
		if diags.HasErrors() {
			t.Fatalf("%s: %s", f, diags.Error())
		}
		bodies = append(bodies, file.Body.(*hclsyntax.Body))
	}
	return bodies
}

func blocks(bodies []*hclsyntax.Body, typ string) []*hclsyntax.Block {
	var out []*hclsyntax.Block
	for _, b := range bodies {
		for _, bl := range b.Blocks {
			if bl.Type == typ {
				out = append(out, bl)
			}
		}
	}
	return out
}

// literal is a string attribute's constant value ("" when it is not one).
func literal(a *hclsyntax.Attribute) string {
	if a == nil {
		return ""
	}
	v, diags := a.Expr.Value(&hcl.EvalContext{})
	if diags.HasErrors() || !v.IsKnown() || v.IsNull() || !v.Type().Equals(cty.String) {
		return ""
	}
	return v.AsString()
}

// objectKeys lists the literal keys of every object constructor in expr.
func objectKeys(expr hclsyntax.Expression) (keys []string, objects int) {
	hclsyntax.VisitAll(expr, func(n hclsyntax.Node) hcl.Diagnostics {
		if o, ok := n.(*hclsyntax.ObjectConsExpr); ok && len(o.Items) > 0 {
			objects++
			for _, it := range o.Items {
				if k, ok := it.KeyExpr.(*hclsyntax.ObjectConsKeyExpr); ok {
					if name := hcl.ExprAsKeyword(k.Wrapped); name != "" {
						keys = append(keys, name)
					}
				}
			}
		}
		return nil
	})
	return keys, objects
}

func TestTerraformModulesKeepTheLayoutAndTheContract(t *testing.T) {
	for dir, contract := range modules {
		t.Run(dir, func(t *testing.T) {
			for _, f := range []string{"main.tf", "variables.tf", "outputs.tf", "versions.tf"} {
				if _, err := os.Stat(filepath.Join(terraformDir(), dir, f)); err != nil {
					t.Errorf("missing %s (standard layout)", f)
				}
			}
			bodies := module(t, dir)
			// versions.tf pins Terraform.
			tf := blocks(bodies, "terraform")
			if len(tf) != 1 || tf[0].Body.Attributes["required_version"] == nil {
				t.Errorf("want one terraform block with required_version")
			}
			// Every variable is described; every validation's message
			// names the variable first, as cairn's own errors do.
			for _, v := range blocks(bodies, "variable") {
				name := v.Labels[0]
				if literal(v.Body.Attributes["description"]) == "" {
					t.Errorf("variable %q has no description", name)
				}
				for _, val := range v.Body.Blocks {
					if val.Type != "validation" {
						continue
					}
					if msg := literal(val.Body.Attributes["error_message"]); !strings.HasPrefix(msg, name+":") {
						t.Errorf("variable %q: validation error_message %q should start with %q", name, msg, name+":")
					}
				}
			}
			// The output contract.
			outs := map[string]*hclsyntax.Block{}
			for _, o := range blocks(bodies, "output") {
				outs[o.Labels[0]] = o
				if literal(o.Body.Attributes["description"]) == "" {
					t.Errorf("output %q has no description", o.Labels[0])
				}
			}
			if !contract {
				return
			}
			for name, want := range map[string][]string{OutputSites: append(slices.Clone(SiteKeys), ConnectionKeys...), OutputDNSServers: append(slices.Clone(DNSServerKeys), ConnectionKeys...)} {
				o, ok := outs[name]
				if !ok {
					t.Errorf("no output %q (the contract: %s and %s)", name, OutputSites, OutputDNSServers)
					continue
				}
				expr := o.Body.Attributes["value"].Expr
				keys, objects := objectKeys(expr)
				if objects == 0 {
					// Empty, or passed on from modules that honour it.
					src := string(expr.Range().SliceBytes(readFile(t, expr.Range().Filename)))
					if src != "{}" && src != "[]" && !strings.Contains(src, "module.") {
						t.Errorf("output %q = %s: build the contract's objects, pass a module's on, or leave it empty", name, src)
					}
					continue
				}
				for _, k := range want {
					if !slices.Contains(keys, k) {
						t.Errorf("output %q lacks %q (the contract: %v)", name, k, want)
					}
				}
			}
		})
	}
}

func readFile(t *testing.T, path string) []byte {
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// terraform fmt -check over every module (the terraform on PATH; nothing
// is downloaded).
func TestTerraformFmt(t *testing.T) {
	testenv.Integration(t, "terraform")
	cmd := exec.Command("terraform", "fmt", "-check", "-recursive", "-diff", ".")
	cmd.Dir = terraformDir()
	cmd.Env = append(os.Environ(), "TF_CLI_CONFIG_FILE=/dev/null")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("terraform fmt -check: %v\n%s", err, out)
	}
}
