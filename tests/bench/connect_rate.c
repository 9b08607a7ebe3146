/* New TCP connections per second, for tests/bench/scale.py's packet-path figure.
 *
 *   connect_rate serve PORT...                     accept and close on each port (one process
 *                                                  per port and CPU, SO_REUSEPORT); prints
 *                                                  "ready" once every port listens
 *   connect_rate canned SOCKET REPLYFILE            an HTTP/1.1 server on a Unix socket answering
 *                                                  every request with REPLYFILE's bytes (one
 *                                                  process, epoll); prints "ready"
 *   connect_rate connect HOST PORT SECONDS PARALLEL [SOURCE]
 *                                                  keeps PARALLEL non-blocking connects in
 *                                                  flight for SECONDS; prints one JSON line
 *
 * A connection counts once its handshake completed (the socket became writable with no
 * error); the client then closes it with SO_LINGER 0, so it sends RST and leaves no TIME_WAIT
 * behind: the ephemeral ports of one source address suffice for any rate. A connect still
 * pending after 1 s (a dropped SYN) counts as a timeout and is abandoned.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char* what) {
  perror(what);
  exit(2);
}

static int listen_on(int port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) die("socket");
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
  struct sockaddr_in address = {.sin_family = AF_INET, .sin_port = htons((unsigned short)port)};
  if (bind(fd, (struct sockaddr*)&address, sizeof address) < 0) die("bind");
  if (listen(fd, 4096) < 0) die("listen");
  return fd;
}

static int serve(int argc, char** argv) {
  long cpus = sysconf(_SC_NPROCESSORS_ONLN);
  if (cpus < 1) cpus = 1;
  if (cpus > 4) cpus = 4;
  for (int i = 0; i < argc; i++) {
    int port = atoi(argv[i]);
    for (long c = 0; c < cpus; c++) {
      int fd = listen_on(port); /* bound before "ready" is printed */
      pid_t pid = fork();
      if (pid < 0) die("fork");
      if (pid == 0) {
        for (;;) {
          int client = accept(fd, NULL, NULL);
          if (client >= 0) close(client);
        }
      }
      close(fd);
    }
  }
  printf("ready\n");
  fflush(stdout);
  /* Until stdin closes or a signal ends the process group. */
  char buffer[64];
  while (read(0, buffer, sizeof buffer) > 0) {
  }
  kill(0, SIGTERM);
  return 0;
}

struct slot {
  int fd;
  double started;
};

static int connect_loop(const char* host, int port, double seconds, int parallel,
                        const char* source) {
  struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons((unsigned short)port)};
  if (inet_pton(AF_INET, host, &to.sin_addr) != 1) die("host");
  struct sockaddr_in from = {.sin_family = AF_INET};
  if (source && inet_pton(AF_INET, source, &from.sin_addr) != 1) die("source");
  int ep = epoll_create1(0);
  if (ep < 0) die("epoll_create1");
  struct slot* slots = calloc((size_t)parallel, sizeof *slots);
  long done = 0, failed = 0, timeouts = 0;
  double start = now_s(), end = start + seconds;

#define OPEN(i)                                                                      \
  do {                                                                               \
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);                        \
    if (fd < 0) die("socket");                                                       \
    struct linger lg = {1, 0};                                                       \
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);                           \
    if (source) {                                                                    \
      int one = 1;                                                                   \
      setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);         \
      if (bind(fd, (struct sockaddr*)&from, sizeof from) < 0) die("bind source");    \
    }                                                                                \
    slots[i].fd = fd;                                                                \
    slots[i].started = now_s();                                                      \
    if (connect(fd, (struct sockaddr*)&to, sizeof to) < 0 && errno != EINPROGRESS) { \
      failed++;                                                                      \
      close(fd);                                                                     \
      slots[i].fd = -1;                                                              \
    } else {                                                                         \
      struct epoll_event ev = {.events = EPOLLOUT, .data.u32 = (unsigned)i};         \
      if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0) die("epoll_ctl");               \
    }                                                                                \
  } while (0)

  for (int i = 0; i < parallel; i++) OPEN(i);
  struct epoll_event events[256];
  double last_sweep = start;
  for (;;) {
    double t = now_s();
    if (t >= end) break;
    int n = epoll_wait(ep, events, 256, 50);
    if (n < 0 && errno != EINTR) die("epoll_wait");
    for (int k = 0; k < n; k++) {
      int i = (int)events[k].data.u32;
      int error = 0;
      socklen_t length = sizeof error;
      getsockopt(slots[i].fd, SOL_SOCKET, SO_ERROR, &error, &length);
      if (error == 0)
        done++;
      else
        failed++;
      close(slots[i].fd);
      OPEN(i);
    }
    t = now_s();
    if (t - last_sweep > 0.1) {
      last_sweep = t;
      for (int i = 0; i < parallel; i++) {
        if (slots[i].fd < 0) {
          OPEN(i);
        } else if (t - slots[i].started > 1.0) {
          timeouts++;
          close(slots[i].fd);
          OPEN(i);
        }
      }
    }
  }
  double elapsed = now_s() - start;
  printf(
      "{\"connections\": %ld, \"failures\": %ld, \"timeouts\": %ld, \"seconds\": %.6f, \"rate\": "
      "%.1f}\n",
      done, failed, timeouts, elapsed, (double)done / elapsed);
  return 0;
}

/* The client-side baseline of scale.py's throughput: a server that costs next to nothing. */
struct conn {
  char* buffer;
  size_t used, size;
};

static int canned(const char* path, const char* reply_file) {
  FILE* f = fopen(reply_file, "rb");
  if (!f) die("reply file");
  static char reply[1 << 16];
  size_t reply_len = fread(reply, 1, sizeof reply, f);
  fclose(f);
  int listener = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0);
  if (listener < 0) die("socket");
  struct sockaddr_un address = {.sun_family = AF_UNIX};
  snprintf(address.sun_path, sizeof address.sun_path, "%s", path);
  if (bind(listener, (struct sockaddr*)&address, sizeof address) < 0) die("bind");
  if (listen(listener, 256) < 0) die("listen");
  int ep = epoll_create1(0);
  struct epoll_event ev = {.events = EPOLLIN, .data.fd = listener};
  epoll_ctl(ep, EPOLL_CTL_ADD, listener, &ev);
  enum { MAX_FD = 4096 };
  static struct conn conns[MAX_FD];
  printf("ready\n");
  fflush(stdout);
  struct epoll_event events[64];
  for (;;) {
    int n = epoll_wait(ep, events, 64, -1);
    for (int k = 0; k < n; k++) {
      int fd = events[k].data.fd;
      if (fd == listener) {
        int c;
        while ((c = accept4(listener, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
          if (c >= MAX_FD) {
            close(c);
            continue;
          }
          conns[c].used = 0;
          if (!conns[c].buffer) {
            conns[c].size = 1 << 17;
            conns[c].buffer = malloc(conns[c].size);
          }
          struct epoll_event cev = {.events = EPOLLIN, .data.fd = c};
          epoll_ctl(ep, EPOLL_CTL_ADD, c, &cev);
        }
        continue;
      }
      struct conn* cn = &conns[fd];
      ssize_t got = read(fd, cn->buffer + cn->used, cn->size - cn->used);
      if (got <= 0) {
        close(fd);
        continue;
      }
      cn->used += (size_t)got;
      for (;;) { /* every complete request in the buffer */
        char* end = memmem(cn->buffer, cn->used, "\r\n\r\n", 4);
        if (!end) break;
        size_t head = (size_t)(end - cn->buffer) + 4, length = 0;
        char* cl = memmem(cn->buffer, head, "Content-Length:", 15);
        if (cl) length = (size_t)strtoul(cl + 15, NULL, 10);
        if (cn->used < head + length) break;
        size_t off = 0;
        while (off < reply_len) { /* small replies: the socket buffer takes them at once */
          ssize_t w = write(fd, reply + off, reply_len - off);
          if (w < 0 && errno != EAGAIN) break;
          if (w > 0) off += (size_t)w;
        }
        memmove(cn->buffer, cn->buffer + head + length, cn->used - head - length);
        cn->used -= head + length;
      }
      if (cn->used == cn->size) { /* a request larger than the buffer: not ours */
        close(fd);
      }
    }
  }
  return 0;
}

int main(int argc, char** argv) {
  signal(SIGPIPE, SIG_IGN);
  if (argc >= 3 && strcmp(argv[1], "serve") == 0) return serve(argc - 2, argv + 2);
  if (argc == 4 && strcmp(argv[1], "canned") == 0) return canned(argv[2], argv[3]);
  if ((argc == 6 || argc == 7) && strcmp(argv[1], "connect") == 0)
    return connect_loop(argv[2], atoi(argv[3]), atof(argv[4]), atoi(argv[5]),
                        argc == 7 ? argv[6] : NULL);
  fprintf(stderr,
          "usage: connect_rate serve PORT...\n"
          "       connect_rate canned SOCKET REPLYFILE\n"
          "       connect_rate connect HOST PORT SECONDS PARALLEL [SOURCE]\n");
  return 2;
}
