# flashsale: build, run and test against local Redis and MariaDB.
# `make services` installs/starts them (see scripts/services.sh); `make stop` stops the ones it started.

.DEFAULT_GOAL := help
SHELL := /bin/bash

# Go may live in /usr/local/go/bin without being on PATH.
export PATH := $(PATH):/usr/local/go/bin

REDIS_HOST := $(or $(FLASHSALE_REDIS_HOST),127.0.0.1)
REDIS_PORT := $(or $(FLASHSALE_REDIS_PORT),6379)
MYSQL_PORT := $(or $(FLASHSALE_MYSQL_PORT),3306)
DATA_DIR   := $(or $(FLASHSALE_DATA_DIR),$(CURDIR)/.data)

FLASHSALE_REDIS_ADDR     ?= $(REDIS_HOST):$(REDIS_PORT)
FLASHSALE_MYSQL_DSN      ?= flashsale:flashsale@tcp(127.0.0.1:$(MYSQL_PORT))/flashsale?parseTime=true
FLASHSALE_TEST_MYSQL_DSN ?= root@tcp(127.0.0.1:$(MYSQL_PORT))/?parseTime=true

.PHONY: help build services run test chaos bench proto stop clean

help: ## list the targets
	@echo 'Usage: make TARGET'
	@grep -E '^[a-z]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-9s %s\n", $$1, $$2}'

build: ## build bin/flashsale
	go build -o bin/flashsale ./cmd/flashsale

services: ## install and start Redis and MariaDB, create the flashsale database and user
	bash scripts/services.sh

run: services build ## migrate, stock the item "demo" with 1000, then serve HTTP and gRPC
	export FLASHSALE_MYSQL_DSN='$(FLASHSALE_MYSQL_DSN)' FLASHSALE_REDIS_ADDR='$(FLASHSALE_REDIS_ADDR)'; \
	bin/flashsale migrate && \
	bin/flashsale stock set -if-new demo 1000 && \
	exec bin/flashsale serve

test: services ## go vet, then all tests against real Redis and MariaDB
	go vet ./...
	FLASHSALE_TEST_MYSQL_DSN='$(FLASHSALE_TEST_MYSQL_DSN)' go test -count=1 -timeout 20m ./...

chaos: services ## chaos suite at scale 10 (kill -9, Redis crash, MySQL cut, SCRIPT FLUSH; ~6 min)
	FLASHSALE_TEST_MYSQL_DSN='$(FLASHSALE_TEST_MYSQL_DSN)' FLASHSALE_CHAOS_SCALE=10 go test -count=1 -v -run Chaos -timeout 30m ./tests/

bench: ## measure flashsale against a bare HTTP handler and Redis (scripts/bench.sh, ~2 min)
	FLASHSALE_MYSQL_PORT='$(MYSQL_PORT)' bash scripts/bench.sh

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

stop: ## stop the Redis and MariaDB that `make services` started under .data (nothing else)
	@for pair in redis-server:'$(DATA_DIR)/redis/redis.pid' mariadbd:'$(DATA_DIR)/mysql.pid'; do \
	  name="$${pair%%:*}"; pidfile="$${pair#*:}"; \
	  [ -f "$$pidfile" ] || { echo "$$name: no pid file $$pidfile, not running"; continue; }; \
	  pid="$$(cat "$$pidfile")"; \
	  if [ "$$(ps -o comm= -p "$$pid" 2>/dev/null)" != "$$name" ]; then \
	    echo "$$name: stale pid file $$pidfile, removing it"; rm -f "$$pidfile"; continue; \
	  fi; \
	  echo "$$name: stopping pid $$pid"; kill "$$pid"; \
	  for i in $$(seq 60); do kill -0 "$$pid" 2>/dev/null || break; sleep 0.5; done; \
	  if kill -0 "$$pid" 2>/dev/null; then echo "$$name: pid $$pid still running after 30 s" >&2; exit 1; fi; \
	  rm -f "$$pidfile"; \
	done

clean: ## remove bin/
	rm -rf bin
