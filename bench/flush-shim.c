/* LD_PRELOAD library for the delivery benchmarks and the e2e flush count:
   makes every flush to stable storage slower by a fixed delay and records
   it, so that a run can tell how many flushes a delivery costs.

   Environment (read once per process):
     LOOPGUARD_FLUSH_DELAY_MS  milliseconds added to each flush (default 0)
     LOOPGUARD_FLUSH_LOG       a file to which each flush appends one line
                               "<pid> <call> <path>\n" (one write with
                               O_APPEND, so that all processes of a run can
                               share it); unset or empty: nothing recorded

   A flush is fsync(), fdatasync(), syncfs(), sync(), msync() with MS_SYNC,
   sync_file_range() that waits for the write-out, and any write to a
   descriptor opened with O_DSYNC or O_SYNC (LMDB writes its meta page that
   way unless MDB_NOMETASYNC) or with RWF_DSYNC/RWF_SYNC.  The descriptor's
   flags are looked up at write time (fcntl F_GETFL), so descriptors opened
   before the library was loaded or inherited over exec count as well.

   The library depends on libc alone: it is loaded into every process of
   a Dovecot, including the ones that drop privileges. */

#define _GNU_SOURCE
/* the wrappers define both the plain and the *64 names themselves */
#undef _FILE_OFFSET_BITS

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#define FLUSH_SHIM_PATH_MAX 512

struct flush_shim_real {
	int (*fsync)(int);
	int (*fdatasync)(int);
	int (*syncfs)(int);
	void (*sync)(void);
	int (*msync)(void *, size_t, int);
	int (*sync_file_range)(int, off64_t, off64_t, unsigned int);
	ssize_t (*write)(int, const void *, size_t);
	ssize_t (*pwrite)(int, const void *, size_t, off_t);
	ssize_t (*pwrite64)(int, const void *, size_t, off64_t);
	ssize_t (*writev)(int, const struct iovec *, int);
	ssize_t (*pwritev)(int, const struct iovec *, int, off_t);
	ssize_t (*pwritev64)(int, const struct iovec *, int, off64_t);
	ssize_t (*pwritev2)(int, const struct iovec *, int, off_t, int);
	ssize_t (*pwritev64v2)(int, const struct iovec *, int, off64_t, int);
};

static struct flush_shim_real real;
static struct timespec flush_shim_delay;
static const char *flush_shim_log;
static volatile int flush_shim_ready = 0;

static void *flush_shim_next(const char *name)
{
	void *fn = dlsym(RTLD_NEXT, name);

	if (fn == NULL) {
		fprintf(stderr, "flush-shim: %s not found\n", name);
		abort();
	}
	return fn;
}

/* Runs as a constructor and again from any wrapper called before it (by
   another library's constructor).  Two threads doing it at once store the
   same values. */
static void __attribute__((constructor)) flush_shim_init(void)
{
	const char *value;
	unsigned long msecs = 0;

	if (flush_shim_ready)
		return;
	real.fsync = flush_shim_next("fsync");
	real.fdatasync = flush_shim_next("fdatasync");
	real.syncfs = flush_shim_next("syncfs");
	real.sync = flush_shim_next("sync");
	real.msync = flush_shim_next("msync");
	real.sync_file_range = flush_shim_next("sync_file_range");
	real.write = flush_shim_next("write");
	real.pwrite = flush_shim_next("pwrite");
	real.pwrite64 = flush_shim_next("pwrite64");
	real.writev = flush_shim_next("writev");
	real.pwritev = flush_shim_next("pwritev");
	real.pwritev64 = flush_shim_next("pwritev64");
	real.pwritev2 = flush_shim_next("pwritev2");
	real.pwritev64v2 = flush_shim_next("pwritev64v2");

	value = getenv("LOOPGUARD_FLUSH_DELAY_MS");
	if (value != NULL && *value != '\0')
		msecs = strtoul(value, NULL, 10);
	flush_shim_delay.tv_sec = msecs / 1000;
	flush_shim_delay.tv_nsec = (long)(msecs % 1000) * 1000000L;

	value = getenv("LOOPGUARD_FLUSH_LOG");
	if (value != NULL && *value != '\0')
		flush_shim_log = strdup(value);
	flush_shim_ready = 1;
}

static void flush_shim_record(const char *call, int fd)
{
	char link[64], path[FLUSH_SHIM_PATH_MAX], line[FLUSH_SHIM_PATH_MAX + 64];
	ssize_t len;
	int log_fd, line_len;

	if (fd < 0)
		strcpy(path, "-");
	else {
		snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
		len = readlink(link, path, sizeof(path) - 1);
		if (len < 0)
			strcpy(path, "?");
		else
			path[len] = '\0';
	}
	line_len = snprintf(line, sizeof(line), "%ld %s %s\n",
			    (long)getpid(), call, path);
	if (line_len < 0 || (size_t)line_len >= sizeof(line))
		return;
	/* opened for each record: the process may have changed its uid (the
	   file is made writable for all by whoever runs the benchmark) */
	log_fd = open(flush_shim_log, O_WRONLY | O_APPEND | O_CLOEXEC);
	if (log_fd < 0)
		return;
	(void)real.write(log_fd, line, line_len);
	(void)close(log_fd);
}

/* Called before each flush: the delay stands for the disk's time. */
static void flush_shim_flush(const char *call, int fd)
{
	int old_errno = errno;
	struct timespec left;

	flush_shim_init();
	left = flush_shim_delay;
	if (flush_shim_log != NULL)
		flush_shim_record(call, fd);
	while (left.tv_sec > 0 || left.tv_nsec > 0) {
		if (nanosleep(&left, &left) == 0 || errno != EINTR)
			break;
	}
	errno = old_errno;
}

static int flush_shim_fd_syncs(int fd)
{
	int old_errno = errno;
	int flags = fcntl(fd, F_GETFL);

	errno = old_errno;
	return flags >= 0 && (flags & (O_DSYNC | O_SYNC)) != 0;
}

static void flush_shim_write(const char *call, int fd, int rwf_flags)
{
	flush_shim_init();
	if ((rwf_flags & (RWF_DSYNC | RWF_SYNC)) != 0 ||
	    flush_shim_fd_syncs(fd))
		flush_shim_flush(call, fd);
}

int fsync(int fd)
{
	flush_shim_flush("fsync", fd);
	return real.fsync(fd);
}

int fdatasync(int fd)
{
	flush_shim_flush("fdatasync", fd);
	return real.fdatasync(fd);
}

int syncfs(int fd)
{
	flush_shim_flush("syncfs", fd);
	return real.syncfs(fd);
}

void sync(void)
{
	flush_shim_flush("sync", -1);
	real.sync();
}

int msync(void *addr, size_t length, int flags)
{
	flush_shim_init();
	if ((flags & MS_SYNC) != 0)
		flush_shim_flush("msync", -1);
	return real.msync(addr, length, flags);
}

int sync_file_range(int fd, off64_t offset, off64_t nbytes,
		    unsigned int flags)
{
	flush_shim_init();
	if ((flags & SYNC_FILE_RANGE_WAIT_AFTER) != 0)
		flush_shim_flush("sync_file_range", fd);
	return real.sync_file_range(fd, offset, nbytes, flags);
}

ssize_t write(int fd, const void *buf, size_t count)
{
	flush_shim_write("write", fd, 0);
	return real.write(fd, buf, count);
}

ssize_t pwrite(int fd, const void *buf, size_t count, off_t offset)
{
	flush_shim_write("pwrite", fd, 0);
	return real.pwrite(fd, buf, count, offset);
}

ssize_t pwrite64(int fd, const void *buf, size_t count, off64_t offset)
{
	flush_shim_write("pwrite", fd, 0);
	return real.pwrite64(fd, buf, count, offset);
}

ssize_t writev(int fd, const struct iovec *iov, int iovcnt)
{
	flush_shim_write("writev", fd, 0);
	return real.writev(fd, iov, iovcnt);
}

ssize_t pwritev(int fd, const struct iovec *iov, int iovcnt, off_t offset)
{
	flush_shim_write("pwritev", fd, 0);
	return real.pwritev(fd, iov, iovcnt, offset);
}

ssize_t pwritev64(int fd, const struct iovec *iov, int iovcnt,
		  off64_t offset)
{
	flush_shim_write("pwritev", fd, 0);
	return real.pwritev64(fd, iov, iovcnt, offset);
}

ssize_t pwritev2(int fd, const struct iovec *iov, int iovcnt, off_t offset,
		 int flags)
{
	flush_shim_write("pwritev2", fd, flags);
	return real.pwritev2(fd, iov, iovcnt, offset, flags);
}

ssize_t pwritev64v2(int fd, const struct iovec *iov, int iovcnt,
		    off64_t offset, int flags)
{
	flush_shim_write("pwritev2", fd, flags);
	return real.pwritev64v2(fd, iov, iovcnt, offset, flags);
}
