/* Secrets on disk: private keys and password files must be private to
 * their owner (as ssh insists for its keys), and their contents are wiped
 * from memory when no longer needed. Nothing here logs: callers report the
 * message left in err, which names the file but never its contents. */
#include "fedvigil/util.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* The mode check shared by the path and the open-file variants. */
static int check_stat(const struct stat *st, const char *path, const char *what, char *err,
		      size_t errlen)
{
	if (!S_ISREG(st->st_mode)) {
		snprintf(err, errlen, "%s %s is not a regular file", what, path);
		return -EINVAL;
	}
	if (st->st_mode & (S_IRWXG | S_IRWXO)) {
		snprintf(err, errlen,
			 "%s %s is accessible by group or others (mode %04o); refusing to use it: "
			 "chmod 600 %s",
			 what, path, (unsigned)(st->st_mode & 07777), path);
		return -EPERM;
	}
	return 0;
}

int fv_file_check_private(const char *path, const char *what, char *err, size_t errlen)
{
	struct stat st;

	if (stat(path, &st) < 0) {
		int r = -errno;

		snprintf(err, errlen, "%s %s: cannot open: %s", what, path, strerror(-r));
		return r;
	}
	return check_stat(&st, path, what, err, errlen);
}

int fv_secret_read(const char *path, const char *what, size_t max_len, char **ret_buf,
		   size_t *ret_len, char *err, size_t errlen)
{
	struct stat st;
	char *buf = NULL;
	size_t got = 0;
	int fd, r;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		r = -errno;
		snprintf(err, errlen, "%s %s: cannot open: %s", what, path, strerror(-r));
		return r;
	}
	/* Checked on the open file: no window between check and read. */
	if (fstat(fd, &st) < 0) {
		r = -errno;
		snprintf(err, errlen, "%s %s: cannot stat: %s", what, path, strerror(-r));
		goto fail;
	}
	r = check_stat(&st, path, what, err, errlen);
	if (r < 0)
		goto fail;
	if ((uint64_t)st.st_size > max_len) {
		snprintf(err, errlen, "%s %s is too large (%lld bytes, max %zu)", what, path,
			 (long long)st.st_size, max_len);
		r = -E2BIG;
		goto fail;
	}
	buf = malloc(max_len + 1);
	if (!buf) {
		snprintf(err, errlen, "%s %s: out of memory", what, path);
		r = -ENOMEM;
		goto fail;
	}
	while (got < max_len) {
		ssize_t n = read(fd, buf + got, max_len - got);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			r = -errno;
			snprintf(err, errlen, "%s %s: cannot read: %s", what, path, strerror(-r));
			goto fail;
		}
		if (n == 0)
			break;
		got += (size_t)n;
	}
	close(fd);
	buf[got] = '\0';
	*ret_buf = buf;
	*ret_len = got;
	return 0;
fail:
	fv_secret_free(buf, buf ? max_len + 1 : 0);
	close(fd);
	return r;
}

int fv_secret_read_line(const char *path, const char *what, char *buf, size_t size, char *err,
			size_t errlen)
{
	char *data = NULL;
	size_t len = 0, n, max;
	int r;

	if (!buf || size == 0)
		return -EINVAL;
	/* A password file may hold a comment line or two after the secret;
	 * anything larger is not a password file. */
	max = FV_MAX(size + 1, (size_t)4096);
	r = fv_secret_read(path, what, max, &data, &len, err, errlen);
	if (r < 0)
		return r;
	n = strcspn(data, "\r\n");
	if (n == 0) {
		snprintf(err, errlen, "%s %s is empty", what, path);
		r = -ENODATA;
	} else if (n >= size) {
		snprintf(err, errlen, "%s %s: secret too long (max %zu characters)", what, path,
			 size - 1);
		r = -E2BIG;
	} else {
		memcpy(buf, data, n);
		buf[n] = '\0';
	}
	fv_secret_free(data, max + 1);
	return r;
}

void fv_secret_free(void *buf, size_t len)
{
	if (!buf)
		return;
	explicit_bzero(buf, len);
	free(buf);
}
