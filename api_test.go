package rediq_test

import (
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/rediq/rediq"
	"github.com/rediq/rediq/internal/broker"
	"github.com/rediq/rediq/internal/codec"
)

// What go doc shows of packages rediq and worker names nothing internal: no
// exported function takes or returns an internal type, no exported constant,
// variable or field is declared by an internal package's name.
func TestPublicAPIShowsNoInternals(t *testing.T) {
	t.Parallel()
	var files []string
	for _, dir := range []string{".", "worker"} {
		fs, err := filepath.Glob(filepath.Join(dir, "*.go"))
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, fs...)
	}
	fset := token.NewFileSet()
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, parser.SkipObjectResolution)
		if err != nil {
			t.Fatal(err)
		}
		internal := map[string]bool{}
		for _, imp := range f.Imports {
			path, _ := strconv.Unquote(imp.Path.Value)
			if strings.Contains(path, "/internal/") {
				local := filepath.Base(path)
				if imp.Name != nil {
					local = imp.Name.Name
				}
				internal[local] = true
			}
		}
		// check reports each internal name in n, a part of the exported API.
		check := func(what string, n ast.Node) {
			ast.Inspect(n, func(n ast.Node) bool {
				if sel, ok := n.(*ast.SelectorExpr); ok {
					if x, ok := sel.X.(*ast.Ident); ok && internal[x.Name] {
						t.Errorf("%s: %s shows %s.%s", fset.Position(sel.Pos()), what, x.Name, sel.Sel.Name)
					}
				}
				return true
			})
		}
		for _, d := range f.Decls {
			switch d := d.(type) {
			case *ast.FuncDecl:
				if d.Name.IsExported() && (d.Recv == nil || exportedRecv(d.Recv)) {
					check(d.Name.Name, d.Type)
				}
			case *ast.GenDecl:
				for _, s := range d.Specs {
					switch s := s.(type) {
					case *ast.ValueSpec:
						for _, n := range s.Names {
							if n.IsExported() {
								if s.Type != nil {
									check(n.Name, s.Type)
								}
								for _, v := range s.Values {
									check(n.Name, v)
								}
							}
						}
					case *ast.TypeSpec:
						if !s.Name.IsExported() {
							continue
						}
						var members *ast.FieldList // go doc hides the unexported ones
						switch typ := s.Type.(type) {
						case *ast.StructType:
							members = typ.Fields
						case *ast.InterfaceType:
							members = typ.Methods
						default:
							check(s.Name.Name, s.Type)
							continue
						}
						for _, f := range members.List {
							if len(f.Names) == 0 { // embedded
								check(s.Name.Name, f.Type)
							}
							for _, n := range f.Names {
								if n.IsExported() {
									check(s.Name.Name+"."+n.Name, f.Type)
								}
							}
						}
					}
				}
			}
		}
	}
}

func exportedRecv(recv *ast.FieldList) bool {
	typ := recv.List[0].Type
	if star, ok := typ.(*ast.StarExpr); ok {
		typ = star.X
	}
	if idx, ok := typ.(*ast.IndexListExpr); ok {
		typ = idx.X
	}
	if idx, ok := typ.(*ast.IndexExpr); ok {
		typ = idx.X
	}
	id, ok := typ.(*ast.Ident)
	return ok && id.IsExported()
}

// The errors the internal packages return match rediq's: a worker that loses
// its lease, an enqueue without an answer, an undecodable message.
func TestInternalErrorsMatchThePublicOnes(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name   string
		err    error
		public error
	}{
		{"lease lost", fmt.Errorf("fetch: %w", broker.ErrLeaseLost), rediq.ErrLeaseLost},
		{"outcome unknown", fmt.Errorf("enqueue: %w: timeout", broker.ErrOutcomeUnknown), rediq.ErrOutcomeUnknown},
		{"malformed", codec.DecodeInto([]byte{0x01}, new(codec.Envelope)), rediq.ErrMalformedMessage},
		{"skip retry", rediq.SkipRetry(errors.New("bad input")), rediq.ErrSkipRetry},
	} {
		if !errors.Is(c.err, c.public) {
			t.Errorf("%s: %v does not match %v", c.name, c.err, c.public)
		}
	}
}
