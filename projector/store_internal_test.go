package projector

import "testing"

func TestInsertRows(t *testing.T) {
	for _, tt := range []struct {
		cols, rows int
		want       string
	}{
		{1, 1, "H (?) T"},
		{3, 1, "H (?,?,?) T"},
		{2, 3, "H (?,?),(?,?),(?,?) T"},
	} {
		if got := insertRows("H ", tt.cols, tt.rows, " T"); got != tt.want {
			t.Errorf("insertRows(%d, %d): got %q, want %q", tt.cols, tt.rows, got, tt.want)
		}
	}
}
