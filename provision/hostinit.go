package provision

import (
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
)

// HostInit is the anchor of a namespace host: run by `cairn provision
// host-init` as PID 1 of fresh mount, UTS, IPC and PID namespaces (inside
// the host's network namespace). It makes the host's root an overlay of
// this machine's root with the host's own upper directory, mounts /proc,
// /sys, /dev, /run and /tmp, pivots into it, sets the host name, writes
// its PID as the machine sees it to anchor.pid (the host is ready), and
// then reaps orphans until SIGTERM. When it exits, the kernel
// ends every process of the host and its mounts go with the namespace.
func HostInit(state, hostname string) error {
	if os.Getpid() != 1 {
		return fmt.Errorf("host-init must be PID 1 of a new PID namespace (cairn provision host up starts it)")
	}
	// The machine's /proc is still mounted: it names this process by its
	// PID outside the new PID namespace (what nsenter and Ansible use).
	hostPID, err := os.Readlink("/proc/self")
	if err != nil {
		return err
	}
	// Keep a handle on the state directory: after pivot_root its path
	// leads into the overlay, not to the real directory.
	dir, err := os.Open(state)
	if err != nil {
		return err
	}
	defer dir.Close()
	root, err := mountRoot(state)
	if err != nil {
		return err
	}
	if err := pivotInto(root); err != nil {
		return err
	}
	if err := syscall.Sethostname([]byte(hostname)); err != nil {
		return fmt.Errorf("hostname: %w", err)
	}
	fd, err := syscall.Openat(int(dir.Fd()), "anchor.pid", syscall.O_CREAT|syscall.O_TRUNC|syscall.O_WRONLY|syscall.O_CLOEXEC, 0o644)
	if err != nil {
		return fmt.Errorf("signal ready: %w", err)
	}
	syscall.Write(fd, []byte(hostPID+"\n"))
	syscall.Close(fd)
	reapUntilTerminated()
	return nil
}

// mountRoot makes the host's root under state: an overlay of this
// machine's root with the host's own upper directory, with /proc, /sys,
// /dev, /run and /tmp mounted in it.
func mountRoot(state string) (string, error) {
	if err := syscall.Mount("", "/", "", syscall.MS_REC|syscall.MS_PRIVATE, ""); err != nil {
		return "", fmt.Errorf("make / private: %w", err)
	}
	root := filepath.Join(state, "root")
	opts := fmt.Sprintf("lowerdir=/,upperdir=%s,workdir=%s", filepath.Join(state, "upper"), filepath.Join(state, "work"))
	if err := syscall.Mount("overlay", root, "overlay", 0, opts); err != nil {
		return "", fmt.Errorf("overlay root: %w", err)
	}
	for _, m := range []struct {
		src, dst, fstype string
		flags            uintptr
		data             string
	}{
		{"proc", "proc", "proc", syscall.MS_NOSUID | syscall.MS_NODEV | syscall.MS_NOEXEC, ""},
		{"sysfs", "sys", "sysfs", syscall.MS_NOSUID | syscall.MS_NODEV | syscall.MS_NOEXEC | syscall.MS_RDONLY, ""},
		{"/dev", "dev", "", syscall.MS_BIND | syscall.MS_REC, ""},
		{"tmpfs", "run", "tmpfs", syscall.MS_NOSUID | syscall.MS_NODEV, "mode=0755"},
		{"tmpfs", "tmp", "tmpfs", syscall.MS_NOSUID | syscall.MS_NODEV, "mode=1777"},
	} {
		dst := filepath.Join(root, m.dst)
		if err := os.MkdirAll(dst, 0o755); err != nil {
			return "", err
		}
		if err := syscall.Mount(m.src, dst, m.fstype, m.flags, m.data); err != nil {
			return "", fmt.Errorf("mount %s on /%s: %w", m.src, m.dst, err)
		}
	}
	return root, nil
}

// pivotInto makes root the root of this mount namespace and detaches the
// old one.
func pivotInto(root string) error {
	old := filepath.Join(root, ".oldroot")
	if err := os.MkdirAll(old, 0o700); err != nil {
		return err
	}
	if err := syscall.PivotRoot(root, old); err != nil {
		return fmt.Errorf("pivot_root: %w", err)
	}
	if err := os.Chdir("/"); err != nil {
		return err
	}
	if err := syscall.Unmount("/.oldroot", syscall.MNT_DETACH); err != nil {
		return fmt.Errorf("detach the old root: %w", err)
	}
	os.Remove("/.oldroot")
	return nil
}

// reapUntilTerminated reaps orphans until SIGTERM or SIGINT: then PID 1
// leaves, and the kernel ends the host's processes.
func reapUntilTerminated() {
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, syscall.SIGCHLD, syscall.SIGTERM, syscall.SIGINT)
	for s := range sigs {
		if s != syscall.SIGCHLD {
			return
		}
		for {
			var ws syscall.WaitStatus
			if pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil); pid <= 0 || err != nil {
				break
			}
		}
	}
}
