package ingest

import (
	"context"
	"fmt"
	"math"
	"unicode/utf8"

	"google.golang.org/grpc"
	"google.golang.org/grpc/encoding"
	protocodec "google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/flashsale/flashsale/ledger"
)

// gRPC requests are decoded strictly, so that gRPC refuses what HTTP refuses, and as a bad
// request. Left to grpc and protobuf-go, a quantity of 2^32+1 would be read as 1 (a varint
// given to an int32 field is truncated), and a string field that is not UTF-8 would be
// answered Internal (grpc reports every codec error so). Here both are InvalidArgument.
//
// grpc decodes a request inside the generated handler, before any interceptor, so the check
// sits in the codec, and the handler tells it which messages are requests by passing them
// wrapped in a *request; the codec puts the decoding error in the wrapper rather than
// returning it, and the handler answers it through the error table.

// request is a request message being decoded, and what was wrong with its bytes.
type request struct {
	msg proto.Message
	err error
}

// requestCodec is grpc's proto codec, except for a *request, which it decodes strictly.
type requestCodec struct {
	encoding.CodecV2
}

func newRequestCodec() requestCodec {
	return requestCodec{encoding.GetCodecV2(protocodec.Name)}
}

// Unmarshal decodes data into v; for a *request, any problem is left in its err and the
// call itself succeeds.
func (c requestCodec) Unmarshal(data mem.BufferSlice, v any) error {
	r, ok := v.(*request)
	if !ok {
		return c.CodecV2.Unmarshal(data, v)
	}
	r.err = unmarshalStrict(data.Materialize(), r.msg)
	return nil
}

// unmarshalStrict decodes b into m, refusing with ledger.ErrInvalid a 32-bit integer field whose
// value does not fit in 32 bits, a string field that is not UTF-8, and malformed bytes. Only
// the fields of m itself are checked (the API's requests hold no nested messages or packed
// fields).
func unmarshalStrict(b []byte, m proto.Message) error {
	fields := m.ProtoReflect().Descriptor().Fields()
	for rest := b; len(rest) > 0; {
		num, typ, n := protowire.ConsumeTag(rest)
		if n < 0 {
			return errMalformed
		}
		rest = rest[n:]
		fd := fields.ByNumber(num)
		switch {
		case fd != nil && typ == protowire.VarintType:
			v, n := protowire.ConsumeVarint(rest)
			if n < 0 {
				return errMalformed
			}
			if !fits(fd.Kind(), v) {
				return fmt.Errorf("%w: %s is out of range", ledger.ErrInvalid, fd.Name())
			}
			rest = rest[n:]
		case fd != nil && typ == protowire.BytesType && fd.Kind() == protoreflect.StringKind:
			s, n := protowire.ConsumeBytes(rest)
			if n < 0 {
				return errMalformed
			}
			if !utf8.Valid(s) {
				return fmt.Errorf("%w: %s is not valid UTF-8", ledger.ErrInvalid, fd.Name())
			}
			rest = rest[n:]
		default:
			n := protowire.ConsumeFieldValue(num, typ, rest)
			if n < 0 {
				return errMalformed
			}
			rest = rest[n:]
		}
	}
	if err := proto.Unmarshal(b, m); err != nil {
		return errMalformed
	}
	return nil
}

var errMalformed = fmt.Errorf("%w: malformed message", ledger.ErrInvalid)

// fits reports whether varint v is a value of a field of kind k without truncation. An int32
// (or enum) is sent sign-extended to 64 bits, so a negative one is a huge varint.
func fits(k protoreflect.Kind, v uint64) bool {
	switch k {
	case protoreflect.Int32Kind, protoreflect.EnumKind:
		return int64(v) >= math.MinInt32 && int64(v) <= math.MaxInt32
	case protoreflect.Uint32Kind, protoreflect.Sint32Kind:
		return v <= math.MaxUint32
	}
	return true
}

// strictService returns a copy of desc whose unary handlers decode their request strictly,
// with a codec that is a requestCodec, and answer a bad one through the gRPC error table.
func strictService(desc *grpc.ServiceDesc) *grpc.ServiceDesc {
	out := *desc
	out.Methods = make([]grpc.MethodDesc, len(desc.Methods))
	for i, md := range desc.Methods {
		handler := md.Handler
		md.Handler = func(srv any, ctx context.Context, dec func(any) error, ic grpc.UnaryServerInterceptor) (any, error) {
			return handler(srv, ctx, func(v any) error {
				msg, ok := v.(proto.Message)
				if !ok {
					return dec(v)
				}
				r := &request{msg: msg}
				if err := dec(r); err != nil {
					return err
				}
				received(ctx) // the request is in: no receive deadline for the work it asks
				if r.err != nil {
					code, msg, _ := grpcError(r.err)
					return status.Error(code, msg)
				}
				return nil
			}, ic)
		}
		out.Methods[i] = md
	}
	return &out
}
