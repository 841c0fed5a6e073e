package ingest_test

import (
	"net/http"
	"testing"

	"github.com/flashsale/flashsale/ingest/admin"
)

// TestAdminMethodNotAllowed: an admin route asked with a method it does not serve answers 405
// with Allow, with or without credentials, and changes nothing; an admin path that does not
// exist stays 404.
func TestAdminMethodNotAllowed(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	setStock(t, e.l, "a", stockSet(5))
	base, c := e.startBoard(t, admin.Options{Token: "tok"})
	tests := []struct {
		method, path, bearer string
		want                 int
		allow                string
	}{
		{http.MethodPost, "/admin/items/a", "Bearer tok", http.StatusMethodNotAllowed, "PUT"},
		{http.MethodGet, "/admin/items/a", "Bearer tok", http.StatusMethodNotAllowed, "PUT"},
		{http.MethodPost, "/admin/items/a", "", http.StatusMethodNotAllowed, "PUT"},
		{http.MethodDelete, "/admin/pending", "Bearer tok", http.StatusMethodNotAllowed, "GET"},
		{http.MethodGet, "/admin/audit", "Bearer tok", http.StatusMethodNotAllowed, "POST"},
		{http.MethodGet, "/admin/logout", "Bearer tok", http.StatusMethodNotAllowed, "POST"},
		{http.MethodGet, "/admin/login", "", http.StatusMethodNotAllowed, "POST"},
		{http.MethodPut, "/admin/items/a", "Bearer tok", http.StatusBadRequest, ""}, // the route is there: an empty body
		{http.MethodGet, "/admin/nope", "Bearer tok", http.StatusNotFound, ""},
		{http.MethodGet, "/admin/nope", "", http.StatusNotFound, ""},
	}
	for _, tt := range tests {
		before := snapshot(t, e.rdb)
		resp, body := adminReq{method: tt.method, path: tt.path, bearer: tt.bearer}.do(t, c, base)
		if resp.StatusCode != tt.want || resp.Header.Get("Allow") != tt.allow {
			t.Errorf("%s %s (bearer %q): got %d Allow %q %s, want %d Allow %q",
				tt.method, tt.path, tt.bearer, resp.StatusCode, resp.Header.Get("Allow"), body, tt.want, tt.allow)
		}
		assertUnchanged(t, e.rdb, before)
	}
}
