using System.Net.Sockets;
using System.Runtime.InteropServices;

namespace MinBft.Usig;

/// <summary>
/// The process and user at the other end of a Unix domain socket, as the kernel recorded them when
/// it connected (Linux <c>SO_PEERCRED</c>, <c>struct ucred { pid_t pid; uid_t uid; gid_t gid; }</c>):
/// the USIG program admits only its silo's user by it, and the silo finds its program's process.
/// </summary>
public static class PeerCredentials
{
    private const int SolSocket = 1, SoPeerCred = 17; // <sys/socket.h> on Linux

    /// <summary>The peer's process id (0 when it is outside this PID namespace) and user id; null
    /// where the kernel cannot say (another OS, or not a connected Unix socket).</summary>
    public static (int ProcessId, uint UserId)? Of(Socket socket)
    {
        ArgumentNullException.ThrowIfNull(socket);
        if (!OperatingSystem.IsLinux()) return null;
        Span<byte> credentials = stackalloc byte[12];
        try
        {
            if (socket.GetRawSocketOption(SolSocket, SoPeerCred, credentials) < 12) return null;
        }
        catch (SocketException)
        {
            return null;
        }
        return (MemoryMarshal.Read<int>(credentials), MemoryMarshal.Read<uint>(credentials[4..]));
    }
}
