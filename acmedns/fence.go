package acmedns

import (
	"context"
	"sync"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Fence is a versioned value with compare-and-swap, where a provider
// whose API has no conditional writes keeps the last state it wrote.
type Fence interface {
	// Get returns the value and its version (0: absent).
	Get(ctx context.Context) (value []byte, version int64, err error)
	// Put stores value only if the fence is still at version (0: absent)
	// and reports whether it did.
	Put(ctx context.Context, value []byte, version int64) (bool, error)
}

// EtcdFence keeps the fence in one etcd key; the version is its
// ModRevision and Put is one etcd transaction (linearizable).
type EtcdFence struct {
	Client *clientv3.Client
	Key    string
}

func (f EtcdFence) Get(ctx context.Context) ([]byte, int64, error) {
	r, err := f.Client.Get(ctx, f.Key)
	if err != nil {
		return nil, 0, err
	}
	if len(r.Kvs) == 0 {
		return nil, 0, nil
	}
	return r.Kvs[0].Value, r.Kvs[0].ModRevision, nil
}

func (f EtcdFence) Put(ctx context.Context, value []byte, version int64) (bool, error) {
	cmp := clientv3.Compare(clientv3.ModRevision(f.Key), "=", version)
	if version == 0 {
		cmp = clientv3.Compare(clientv3.CreateRevision(f.Key), "=", 0)
	}
	r, err := f.Client.Txn(ctx).If(cmp).Then(clientv3.OpPut(f.Key, string(value))).Commit()
	if err != nil {
		return false, err
	}
	return r.Succeeded, nil
}

// MemFence is a Fence in memory (one process: tests).
type MemFence struct {
	mu      sync.Mutex
	value   []byte
	version int64
}

func (f *MemFence) Get(context.Context) ([]byte, int64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.value, f.version, nil
}

func (f *MemFence) Put(_ context.Context, value []byte, version int64) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if version != f.version {
		return false, nil
	}
	f.value, f.version = value, f.version+1
	return true, nil
}
