/* shmengine batched UDP I/O: one system call for many datagrams.
 *
 * A MoldUDP64 publisher sends tens of thousands of packets a second and a
 * subscriber reads as many; one sendmmsg/recvmmsg per batch instead of one
 * sendto/recvfrom per packet is most of the cost saved. Buffers, lengths and
 * addresses belong to the caller; nothing is allocated. Errors come back as
 * a negative errno, never through errno alone. Addresses are IPv4 in network
 * byte order, ports in host byte order. */
#ifndef SHMENGINE_NET_H
#define SHMENGINE_NET_H
#include <stdint.h>

/* At most this many datagrams per call (the iovec arrays live on the stack). */
#define SHME_NET_BATCH 256

/* Send n datagrams laid end to end in buf (datagram i is lens[i] bytes and
 * starts where datagram i-1 ends) to addr:port, or to the connected peer when
 * addr and port are both 0. Keeps calling sendmmsg until all are sent or it
 * fails: returns how many were sent (a short count when it failed after
 * sending some; EAGAIN on a non-blocking socket), or -errno when none was. */
int shme_net_send(int fd, const uint8_t *buf, const uint32_t *lens, int n,
                  uint32_t addr, uint16_t port);

/* Receive up to n datagrams into n slots of slot_size bytes each (datagram i
 * lands at buf + i * slot_size). lens[i] is the datagram's full length, so a
 * value above slot_size means it was truncated. src_addr / src_port (either
 * may be NULL) get each sender. timeout_ms < 0 waits for the first datagram,
 * 0 never waits, > 0 waits at most that long; after the first, only what is
 * already queued is taken. Returns the count (0 on timeout) or -errno. */
int shme_net_recv(int fd, uint8_t *buf, uint32_t slot_size, uint32_t *lens,
                  uint32_t *src_addr, uint16_t *src_port, int n, int timeout_ms);

#endif
