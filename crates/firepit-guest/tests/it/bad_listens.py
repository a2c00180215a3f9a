# listen() on a bad descriptor, a file and a UDP socket: prints the errnos, in order.
import ctypes, socket
libc = ctypes.CDLL(None, use_errno=True)
def err(fd):
    assert libc.listen(fd, 8) == -1
    return ctypes.get_errno()
f = open("/proc/self/status")
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
print(err(-1), err(100000), err(f.fileno()), err(u.fileno()))
