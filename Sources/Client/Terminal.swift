import BerthCLI
#if canImport(FoundationEssentials)
import FoundationEssentials
import Glibc
#else
import Foundation
#endif

/// The local terminal of `berth exec -t`: put in raw mode for as long as the remote one runs,
/// so that every key (Ctrl-C and Ctrl-D among them) goes to the remote side, and always put
/// back, whether the command ends, fails, or `berth` is told to stop by a signal.
enum LocalTerminal {
    /// The settings to put back; read by the signal handler, so kept where it can reach them.
    nonisolated(unsafe) private static var saved = termios()
    nonisolated(unsafe) private static var isRaw = false

    /// Rows and columns of the terminal on `fd`, if it is one.
    static func size(of fd: Int32 = STDIN_FILENO) -> (rows: Int, columns: Int)? {
        var size = winsize()
        guard ioctl(fd, UInt(TIOCGWINSZ), &size) == 0, size.ws_row > 0, size.ws_col > 0 else { return nil }
        return (Int(size.ws_row), Int(size.ws_col))
    }

    /// Raw mode on stdin until `restore`; SIGTERM, SIGHUP and SIGQUIT restore it before `berth`
    /// ends with them.
    static func makeRaw() throws {
        guard tcgetattr(STDIN_FILENO, &saved) == 0 else { throw failure("cannot read the terminal's settings: \(String(cString: strerror(errno)))") }
        var raw = saved
        cfmakeraw(&raw)
        guard tcsetattr(STDIN_FILENO, TCSANOW, &raw) == 0 else { throw failure("cannot set the terminal to raw mode: \(String(cString: strerror(errno)))") }
        isRaw = true
        for signal in [SIGTERM, SIGHUP, SIGQUIT, SIGINT] {
            Glibc.signal(signal) { received in
                LocalTerminal.restore()
                Glibc.signal(received, SIG_DFL)
                raise(received)
            }
        }
    }

    /// Puts the settings back; safe to call more than once, and from a signal handler.
    static func restore() {
        guard isRaw else { return }
        isRaw = false
        _ = tcsetattr(STDIN_FILENO, TCSANOW, &saved)
    }
}
