package main

import "testing"

func TestDefaultArchive(t *testing.T) {
	tests := []struct {
		env  map[string]string
		want string
	}{
		{map[string]string{"XDG_DATA_HOME": "/srv/data", "HOME": "/home/shop"}, "file:///srv/data/flashsale/archive"},
		{map[string]string{"HOME": "/home/shop"}, "file:///home/shop/.local/share/flashsale/archive"},
	}
	for _, tt := range tests {
		if got := defaultArchive(func(k string) string { return tt.env[k] }); got != tt.want {
			t.Errorf("defaultArchive(%v) = %s, want %s", tt.env, got, tt.want)
		}
	}
}
