/* A C node (erl_interface, ei) for the cluster tests: it connects to PEER
   as SELF, sends {Self, hello} to the process registered as echo there,
   then receives for SECS seconds, counting the ticks it is sent (ei
   answers each one), the messages, and the hello that comes back. It
   prints one line: "ticks T msgs M echoed E errors X".

     ei_node SELF PEER COOKIE SECS   (ERL_EPMD_PORT names the EPMD) */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "ei.h"

int main(int argc, char **argv) {
    if (argc != 5) {
        fprintf(stderr, "usage: ei_node SELF PEER COOKIE SECS\n");
        return 2;
    }
    char alive[256], host[256];
    const char *at = strchr(argv[1], '@');
    if (!at || at - argv[1] >= 255 || strlen(at + 1) >= 255) return 2;
    memcpy(alive, argv[1], at - argv[1]);
    alive[at - argv[1]] = 0;
    strcpy(host, at + 1);
    ei_init();
    ei_cnode ec;
    struct in_addr addr;
    addr.s_addr = htonl(INADDR_LOOPBACK);
    if (ei_connect_xinit(&ec, host, alive, argv[1], &addr, argv[3], 1) < 0) {
        fprintf(stderr, "init failed\n");
        return 1;
    }
    int fd = ei_connect(&ec, argv[2]);
    if (fd < 0) {
        fprintf(stderr, "connect failed: %d\n", erl_errno);
        return 1;
    }
    ei_x_buff out;
    ei_x_new_with_version(&out);
    ei_x_encode_tuple_header(&out, 2);
    ei_x_encode_pid(&out, ei_self(&ec));
    ei_x_encode_atom(&out, "hello");
    if (ei_reg_send(&ec, fd, "echo", out.buff, out.index) < 0) {
        fprintf(stderr, "send failed: %d\n", erl_errno);
        return 1;
    }
    time_t end = time(NULL) + atoi(argv[4]);
    long ticks = 0, msgs = 0, echoed = 0, errs = 0;
    ei_x_buff x;
    ei_x_new(&x);
    erlang_msg m;
    while (time(NULL) < end) {
        int r = ei_xreceive_msg_tmo(fd, &m, &x, 500);
        if (r == ERL_TICK) {
            ticks++;
        } else if (r == ERL_MSG) {
            msgs++;
            int i = 0, v;
            char a[MAXATOMLEN];
            ei_decode_version(x.buff, &i, &v);
            if (m.msgtype == ERL_SEND && ei_decode_atom(x.buff, &i, a) == 0
                && strcmp(a, "hello") == 0)
                echoed++;
        } else if (erl_errno != ETIMEDOUT) {
            errs++;
            fprintf(stderr, "receive failed: %d\n", erl_errno);
            break;
        }
    }
    printf("ticks %ld msgs %ld echoed %ld errors %ld\n", ticks, msgs, echoed, errs);
    return errs ? 1 : 0;
}
