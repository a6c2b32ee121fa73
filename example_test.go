//go:build linux && (amd64 || arm64)

package shmstore_test

import (
	"errors"
	"fmt"
	"os"

	"github.com/shmstore/shmstore"
)

func exampleStore() (*shmstore.Store, func()) {
	dir, _ := os.MkdirTemp("/dev/shm", "shmstore-example-")
	st, err := shmstore.Open("example", shmstore.Options{Dir: dir})
	if err != nil {
		panic(err)
	}
	return st, func() { st.Close(); os.RemoveAll(dir) }
}

var errInsufficient = errors.New("insufficient funds")

// A transfer: both balances change, or neither. Update re-runs the
// function if another process changed what it read.
func ExampleStore_Update() {
	st, done := exampleStore()
	defer done()

	_ = st.Update(func(tx *shmstore.Tx) error {
		accounts, err := tx.Root().Dict("accounts") // made if missing
		if err != nil {
			return err
		}
		if err := accounts.Set("alice", 100); err != nil {
			return err
		}
		return accounts.Set("bob", 50)
	})

	transfer := func(from, to string, amount int64) error {
		return st.Update(func(tx *shmstore.Tx) error {
			accounts, err := tx.Root().GetDict("accounts")
			if err != nil {
				return err
			}
			a, err := accounts.GetInt(from)
			if err != nil {
				return err
			}
			if a < amount {
				return errInsufficient // aborts: nothing is written
			}
			b, err := accounts.GetInt(to)
			if err != nil {
				return err
			}
			if err := accounts.Set(from, a-amount); err != nil {
				return err
			}
			return accounts.Set(to, b+amount)
		})
	}
	fmt.Println(transfer("alice", "bob", 30))
	fmt.Println(transfer("bob", "alice", 500))

	alice, _ := st.GetInt("accounts/alice")
	bob, _ := st.GetInt("accounts/bob")
	fmt.Println(alice, bob)
	// Output:
	// <nil>
	// insufficient funds
	// 70 80
}

// View sees one consistent snapshot and takes no locks.
func ExampleStore_View() {
	st, done := exampleStore()
	defer done()
	_ = st.Set("accounts/alice", 70)
	_ = st.Set("accounts/bob", 80)

	var total int64
	_ = st.View(func(tx *shmstore.Tx) error {
		accounts, err := tx.Root().GetDict("accounts")
		if err != nil {
			return err
		}
		return accounts.Range(func(k, v shmstore.Value) bool {
			n, _ := v.AsInt()
			total += n
			return true
		})
	})
	fmt.Println(total)
	// Output: 150
}

// Counters add without conflicting: many processes can count at once.
func ExampleCounter() {
	st, done := exampleStore()
	defer done()
	for i := 0; i < 3; i++ {
		_, _ = st.Add("stats/hits", 1)
	}
	_ = st.Update(func(tx *shmstore.Tx) error {
		stats, err := tx.Root().Dict("stats")
		if err != nil {
			return err
		}
		hits, err := stats.Counter("hits")
		if err != nil {
			return err
		}
		return hits.AddBlind(10)
	})
	n, _ := st.Export("stats/hits")
	fmt.Println(n)
	// Output: 13
}

// Counter.Add returns the new value: an ID sequence. Store.Add does too,
// without conflicting with other adders.
func ExampleCounter_Add() {
	st, done := exampleStore()
	defer done()
	_ = st.Update(func(tx *shmstore.Tx) error {
		ids, err := tx.Root().Counter("next-id")
		if err != nil {
			return err
		}
		id, err := ids.Add(1)
		if err != nil {
			return err
		}
		return tx.Root().Set(fmt.Sprintf("user-%d", id), "ada")
	})
	id, _ := st.Add("next-id", 1)
	name, _ := st.Get("user-1")
	fmt.Println(id, name)
	// Output: 2 "ada"
}

// Objects live only inside their transaction: kept, they fail with
// ErrTxClosed instead of reading stale data or losing a write.
func ExampleErrTxClosed() {
	st, done := exampleStore()
	defer done()
	var kept shmstore.Dict
	_ = st.Update(func(tx *shmstore.Tx) error {
		var err error
		kept, err = tx.Root().Dict("config")
		return err
	})
	err := kept.Set("debug", true)
	fmt.Println(errors.Is(err, shmstore.ErrTxClosed))
	// Output: true
}

// Go values (structs with msgpack tags, maps, slices) become shared
// Dicts and Lists, and come back.
func ExampleStore_Decode() {
	st, done := exampleStore()
	defer done()
	type User struct {
		Name  string   `msgpack:"name"`
		Roles []string `msgpack:"roles"`
	}
	_ = st.Set("users/42", User{Name: "ada", Roles: []string{"admin", "dev"}})

	var u User
	fmt.Println(st.Decode("users/42", &u), u.Name, u.Roles)
	role, _ := st.Get("users/42/name")
	fmt.Println(role)
	// Output:
	// <nil> ada [admin dev]
	// "ada"
}

// One List stored under two keys is one object.
func ExampleList() {
	st, done := exampleStore()
	defer done()
	_ = st.Update(func(tx *shmstore.Tx) error {
		queue, err := tx.NewList()
		if err != nil {
			return err
		}
		if err := tx.Root().Set("jobs", queue); err != nil {
			return err
		}
		if err := tx.Root().Set("alias", queue); err != nil {
			return err
		}
		return queue.Append("build")
	})
	_ = st.Update(func(tx *shmstore.Tx) error {
		alias, err := tx.Root().GetList("alias")
		if err != nil {
			return err
		}
		return alias.Append("test")
	})
	jobs, _ := st.Export("jobs")
	fmt.Println(jobs)
	// Output: [build test]
}
