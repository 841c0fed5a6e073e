// Package flashsalepb holds the gRPC API of flashsale: flashsale.proto and the Go code that
// protoc generates from it (committed; `make proto` regenerates it).
package flashsalepb
