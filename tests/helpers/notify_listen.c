/* fv-notify-listen SOCKET: a NOTIFY_SOCKET for tests, standing in for the
 * service manager's end of the notify protocol (sd_notify(3)). Binds a
 * datagram socket at SOCKET and prints every message received as one line,
 * "<wall-clock ms> <message>", with the message's newlines shown as '|'.
 * The socket is made writable for everyone (mode 0666), as systemd's is,
 * so a daemon started under another user can send to it. Runs until
 * SIGTERM/SIGINT, then removes SOCKET. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
	(void)sig;
	stop = 1;
}

int main(int argc, char **argv)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct sigaction act = { .sa_handler = on_signal };
	char buf[4096];
	int fd;

	if (argc != 2 || strlen(argv[1]) >= sizeof(sa.sun_path)) {
		fprintf(stderr, "usage: fv-notify-listen SOCKET-PATH\n");
		return 2;
	}
	sigemptyset(&act.sa_mask);
	sigaction(SIGTERM, &act, NULL); /* no SA_RESTART: recv() returns */
	sigaction(SIGINT, &act, NULL);
	strcpy(sa.sun_path, argv[1]);
	unlink(argv[1]);
	fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || chmod(argv[1], 0666) < 0) {
		fprintf(stderr, "fv-notify-listen: %s: %s\n", argv[1], strerror(errno));
		return 1;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	while (!stop) {
		ssize_t n = recv(fd, buf, sizeof(buf) - 1, 0);
		struct timespec ts;

		if (n < 0) {
			if (errno == EINTR)
				continue;
			fprintf(stderr, "fv-notify-listen: recv: %s\n", strerror(errno));
			break;
		}
		buf[n] = '\0';
		for (ssize_t i = 0; i < n; i++)
			if (buf[i] == '\n')
				buf[i] = '|';
		clock_gettime(CLOCK_REALTIME, &ts);
		printf("%lld %s\n", (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000, buf);
	}
	close(fd);
	unlink(argv[1]);
	return 0;
}
