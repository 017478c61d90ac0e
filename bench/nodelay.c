/* TCP_NODELAY on every socket a server accepts, for bench/small_files.sh's s3s-fs.
 *
 * s3s-fs (hyper) writes each answer's headers and body in two writes on a socket with Nagle's
 * algorithm on, so every small answer waits for the client's delayed ACK (~40 ms): 10,000 GETs of
 * 4 KB took 16 s with the CPUs 85 % idle, 4.1 s with this. The same remedy as localbucket's
 * disable_nagle_algorithm in bench/s3.py (start_logged_localbucket): one socket option, set only
 * in the server process (loaded there with LD_PRELOAD), no system setting changed.
 *
 * Wraps accept and accept4 (the next definitions, from libc, found with dlsym(RTLD_NEXT)) and sets
 * TCP_NODELAY on each accepted descriptor. Built by small_files.sh:
 *   gcc -O2 -shared -fPIC -o target/bench/nodelay.so bench/nodelay.c -ldl
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

static void nodelay(int fd) {
    if (fd >= 0) {
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
}

int accept4(int fd, struct sockaddr *addr, socklen_t *len, int flags) {
    static int (*real)(int, struct sockaddr *, socklen_t *, int);
    if (!real) real = dlsym(RTLD_NEXT, "accept4");
    int c = real(fd, addr, len, flags);
    nodelay(c);
    return c;
}

int accept(int fd, struct sockaddr *addr, socklen_t *len) {
    static int (*real)(int, struct sockaddr *, socklen_t *);
    if (!real) real = dlsym(RTLD_NEXT, "accept");
    int c = real(fd, addr, len);
    nodelay(c);
    return c;
}
