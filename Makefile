# flashsale: build, run and test.
# `make run` runs flashsale with a Redis and a MariaDB of its own (scripts/services.sh: on
# 127.0.0.1, data under .data/, installed with apt when missing); `make stop` stops them.
# `make test` needs no running server (scripts/testenv.sh). No other Redis or MariaDB on the
# machine is changed.

.DEFAULT_GOAL := help
SHELL := /bin/bash

# Go 1.26 in /usr/local/go comes before any older Go on PATH (e.g. Debian's golang-go).
export PATH := /usr/local/go/bin:$(PATH)

DATA_DIR   := $(or $(FLASHSALE_DATA_DIR),$(CURDIR)/.data)
HTTP_ADDR  := $(or $(FLASHSALE_HTTP_ADDR),127.0.0.1:8080)
GRPC_ADDR  := $(or $(FLASHSALE_GRPC_ADDR),127.0.0.1:50051)

.PHONY: help gocheck build services run env stop status test chaos bench proto clean

help: ## list the targets
	@echo 'Usage: make TARGET'
	@grep -E '^[a-z]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-9s %s\n", $$1, $$2}'

gocheck:
	@bash scripts/check-go.sh

build: gocheck ## build bin/flashsale
	go build -o bin/flashsale ./cmd/flashsale

services: ## start make run's own Redis and MariaDB (installed with apt when missing)
	bash scripts/services.sh start

run: build ## build, start the servers, stock the item "demo" with 1000, serve on 127.0.0.1:8080 and :50051 (board at /admin/)
	FLASHSALE_HTTP_ADDR='$(HTTP_ADDR)' bash scripts/services.sh start
	. '$(DATA_DIR)/flashsale.env' && \
	bin/flashsale migrate && \
	bin/flashsale stock set -if-new demo 1000 && \
	echo $$$$ >'$(DATA_DIR)/serve.pid' && \
	exec bin/flashsale serve -http '$(HTTP_ADDR)' -grpc '$(GRPC_ADDR)'

env: ## print the exports that point the CLI at make run's servers: eval "$(make env)"
	@bash scripts/services.sh env

stop: ## stop make run's serve, Redis and MariaDB (nothing else)
	@bash scripts/services.sh stop

status: ## say which of make run's processes run
	@bash scripts/services.sh status

test: gocheck ## go vet, then every test (starts no server of its own but a throwaway MariaDB when none is there)
	go vet ./...
	bash scripts/testenv.sh go test -count=1 -timeout 20m ./...

chaos: gocheck ## chaos suite at scale 10 (kill -9, Redis crash, MySQL cut, SCRIPT FLUSH, Redis failover on cluster and sentinel, kills during archiving and trims; ~9 min before those last two were added, not timed since)
	FLASHSALE_CHAOS_SCALE=10 bash scripts/testenv.sh go test -count=1 -v -run Chaos -timeout 30m ./tests/

bench: gocheck ## measure flashsale against a bare HTTP handler and Redis (scripts/bench.sh, ~2 min)
	bash scripts/bench.sh

proto: ## regenerate proto/*.pb.go from proto/flashsale.proto
	@command -v protoc >/dev/null || { \
	  DEBIAN_FRONTEND=noninteractive apt-get update && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y protobuf-compiler; }
	gobin="$$(go env GOPATH)/bin"; export PATH="$$PATH:$$gobin"; \
	{ command -v protoc-gen-go >/dev/null || \
	  GOBIN="$$gobin" go install google.golang.org/protobuf/cmd/protoc-gen-go@latest; } && \
	{ command -v protoc-gen-go-grpc >/dev/null || \
	  GOBIN="$$gobin" go install google.golang.org/grpc/cmd/protoc-gen-go-grpc@latest; } && \
	protoc --go_out=. --go_opt=paths=source_relative \
	  --go-grpc_out=. --go-grpc_opt=paths=source_relative proto/flashsale.proto

clean: ## remove bin/
	rm -rf bin
