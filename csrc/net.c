#define _GNU_SOURCE
#include "net.h"

#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>

int shme_net_send(int fd, const uint8_t *buf, const uint32_t *lens, int n,
                  uint32_t addr, uint16_t port)
{
    struct mmsghdr msgs[SHME_NET_BATCH];
    struct iovec iov[SHME_NET_BATCH];
    struct sockaddr_in dest;
    int named = addr != 0 || port != 0;
    int sent = 0;

    memset(&dest, 0, sizeof dest);
    dest.sin_family = AF_INET;
    dest.sin_addr.s_addr = addr;
    dest.sin_port = htons(port);
    while (sent < n) {
        int batch = n - sent < SHME_NET_BATCH ? n - sent : SHME_NET_BATCH;
        for (int i = 0; i < batch; i++) {
            iov[i].iov_base = (void *)buf;
            iov[i].iov_len = lens[sent + i];
            buf += lens[sent + i];
            memset(&msgs[i].msg_hdr, 0, sizeof msgs[i].msg_hdr);
            msgs[i].msg_hdr.msg_iov = &iov[i];
            msgs[i].msg_hdr.msg_iovlen = 1;
            if (named) {
                msgs[i].msg_hdr.msg_name = &dest;
                msgs[i].msg_hdr.msg_namelen = sizeof dest;
            }
        }
        int done = sendmmsg(fd, msgs, (unsigned)batch, 0);
        if (done < 0) {
            if (errno == EINTR)
                done = 0;
            else
                return sent > 0 ? sent : -errno;
        }
        /* Rewind buf past only what went out; the rest goes in the next call. */
        for (int i = done; i < batch; i++)
            buf -= lens[sent + i];
        sent += done;
    }
    return sent;
}

int shme_net_recv(int fd, uint8_t *buf, uint32_t slot_size, uint32_t *lens,
                  uint32_t *src_addr, uint16_t *src_port, int n, int timeout_ms)
{
    struct mmsghdr msgs[SHME_NET_BATCH];
    struct iovec iov[SHME_NET_BATCH];
    struct sockaddr_in src[SHME_NET_BATCH];

    if (n > SHME_NET_BATCH)
        n = SHME_NET_BATCH;
    if (n <= 0)
        return 0;
    if (timeout_ms != 0) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int r;
        do
            r = poll(&p, 1, timeout_ms < 0 ? -1 : timeout_ms);
        while (r < 0 && errno == EINTR);
        if (r < 0)
            return -errno;
        if (r == 0)
            return 0;
    }
    for (int i = 0; i < n; i++) {
        iov[i].iov_base = buf + (size_t)i * slot_size;
        iov[i].iov_len = slot_size;
        memset(&msgs[i].msg_hdr, 0, sizeof msgs[i].msg_hdr);
        msgs[i].msg_hdr.msg_iov = &iov[i];
        msgs[i].msg_hdr.msg_iovlen = 1;
        msgs[i].msg_hdr.msg_name = &src[i];
        msgs[i].msg_hdr.msg_namelen = sizeof src[i];
    }
    /* MSG_TRUNC: msg_len is the datagram's real length, so truncation shows. */
    int got = recvmmsg(fd, msgs, (unsigned)n, MSG_DONTWAIT | MSG_TRUNC, NULL);
    if (got < 0)
        return (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) ? 0 : -errno;
    for (int i = 0; i < got; i++) {
        lens[i] = msgs[i].msg_len;
        if (src_addr)
            src_addr[i] = src[i].sin_addr.s_addr;
        if (src_port)
            src_port[i] = ntohs(src[i].sin_port);
    }
    return got;
}
