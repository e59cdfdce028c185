using System.Diagnostics;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Threading.Channels;

namespace AttentionLab.Runner;

/// <summary>One event line from the kernel: its type, the token of the command it belongs to, and its body.</summary>
public sealed record KernelEvent(string EventType, string? Token, JsonObject Body);

/// <summary>The kernel process ended while a command was waiting for it.</summary>
public sealed class KernelExitedException(string message) : Exception(message);

/// <summary>
/// The pinned dotnet-interactive kernel driven over stdio (JSON lines): <c>dotnet tool run dotnet-interactive -- stdio</c>,
/// started from the repo root (so the tool manifest is found) with <c>--working-dir</c> set to the notebook's folder.
/// Dispose kills the whole process tree: closing stdin does not end the kernel.
/// </summary>
public sealed class KernelSession : IDisposable
{
    readonly Process process;
    readonly Channel<KernelEvent> events = Channel.CreateUnbounded<KernelEvent>(new() { SingleReader = true });
    readonly Queue<string> stderrTail = new();
    readonly Task stdoutPump, stderrPump;

    KernelSession(Process process)
    {
        this.process = process;
        stdoutPump = Task.Run(PumpStdout);
        stderrPump = Task.Run(PumpStderr);
    }

    public int ProcessId => process.Id;

    /// <summary>The last lines the kernel wrote to stderr (for error messages).</summary>
    public string StderrTail { get { lock (stderrTail) return string.Join('\n', stderrTail); } }

    /// <summary>The command line the runner uses, for messages and docs.</summary>
    public static string[] Arguments(string workingDir) =>
        ["tool", "run", "dotnet-interactive", "--", "stdio", "--default-kernel", "csharp", "--working-dir", workingDir];

    /// <summary>
    /// Starts the kernel, waits for KernelReady, then warms the C# compiler with a trivial submission (the first
    /// submission costs 2–4 s, which would otherwise count against the first cell's timeout). Kills it and throws on failure.
    /// </summary>
    public static async Task<KernelSession> StartAsync(string repoRoot, string workingDir,
        IReadOnlyDictionary<string, string?> environment, CancellationToken cancel)
    {
        var psi = new ProcessStartInfo("dotnet")
        {
            WorkingDirectory = repoRoot,
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
            StandardInputEncoding = new UTF8Encoding(false),
            StandardOutputEncoding = new UTF8Encoding(false),
            StandardErrorEncoding = new UTF8Encoding(false),
        };
        foreach (var a in Arguments(workingDir)) psi.ArgumentList.Add(a);
        psi.Environment["DOTNET_INTERACTIVE_CLI_TELEMETRY_OPTOUT"] = "1";
        psi.Environment["DOTNET_CLI_TELEMETRY_OPTOUT"] = "1";
        psi.Environment["DOTNET_NOLOGO"] = "1";
        foreach (var (k, v) in environment)
        {
            if (v is null) psi.Environment.Remove(k);
            else psi.Environment[k] = v;
        }

        Process process;
        try
        {
            process = Process.Start(psi) ?? throw new KernelExitedException("could not start `dotnet`");
        }
        catch (System.ComponentModel.Win32Exception e)
        {
            throw new KernelExitedException($"could not start `dotnet` (is the .NET SDK on PATH?): {e.Message}");
        }
        var session = new KernelSession(process);
        try
        {
            bool ready = false;
            await foreach (var e in session.events.Reader.ReadAllAsync(cancel))
                if (e.EventType == "KernelReady") { ready = true; break; }
            if (!ready) throw new KernelExitedException(session.ExitMessage("before KernelReady"));
            var warm = await session.SubmitCodeAsync("warmup", "0", _ => { }, cancel);
            if (warm.EventType != "CommandSucceeded")
                throw new KernelExitedException($"the kernel failed its warm-up submission: {warm.Body["message"]}");
            return session;
        }
        catch
        {
            session.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Sends SubmitCode with <paramref name="token"/> and hands every event of that command (token or token.N) to
    /// <paramref name="onEvent"/>, until CommandSucceeded or CommandFailed for the token itself, which it returns.
    /// Throws <see cref="KernelExitedException"/> when the kernel dies, OperationCanceledException on cancel.
    /// </summary>
    public async Task<KernelEvent> SubmitCodeAsync(string token, string code, Action<KernelEvent> onEvent, CancellationToken cancel)
    {
        var command = new JsonObject
        {
            ["commandType"] = "SubmitCode",
            ["token"] = token,
            ["command"] = new JsonObject { ["code"] = code, ["targetKernelName"] = "csharp" },
        };
        try
        {
            await process.StandardInput.WriteLineAsync(command.ToJsonString().AsMemory(), cancel);
            await process.StandardInput.FlushAsync(cancel);
        }
        catch (IOException)
        {
            throw new KernelExitedException(ExitMessage("while sending the cell"));
        }

        await foreach (var e in events.Reader.ReadAllAsync(cancel))
        {
            if (e.Token is null || !(e.Token == token || e.Token.StartsWith(token + ".", StringComparison.Ordinal))) continue;
            if (e.Token == token && e.EventType is "CommandSucceeded" or "CommandFailed") return e;
            onEvent(e);
        }
        throw new KernelExitedException(ExitMessage("while running the cell"));
    }

    string ExitMessage(string when)
    {
        string code = process.WaitForExit(2000) ? process.ExitCode.ToString() : "?";
        string tail = StderrTail;
        return $"the kernel exited {when} (exit code {code})" + (tail.Length > 0 ? $"; its stderr ends:\n{tail}" : "") +
               (tail.Contains("dotnet tool restore", StringComparison.Ordinal) || tail.Contains("Cannot find a tool", StringComparison.Ordinal)
                   ? "\nRun `dotnet tool restore` in the repository root." : "");
    }

    async Task PumpStdout()
    {
        try
        {
            while (await process.StandardOutput.ReadLineAsync() is { } line)
            {
                if (!line.StartsWith('{')) continue; // e.g. the first-run banner
                KernelEvent? e = Parse(line);
                if (e is not null) events.Writer.TryWrite(e);
            }
        }
        catch (Exception) { /* the process was killed */ }
        finally { events.Writer.TryComplete(); }
    }

    async Task PumpStderr()
    {
        try
        {
            while (await process.StandardError.ReadLineAsync() is { } line)
                lock (stderrTail)
                {
                    stderrTail.Enqueue(line);
                    while (stderrTail.Count > 40) stderrTail.Dequeue();
                }
        }
        catch (Exception) { /* the process was killed */ }
    }

    /// <summary>Parses one stdout line; null for lines that are not kernel events.</summary>
    public static KernelEvent? Parse(string line)
    {
        try
        {
            if (JsonNode.Parse(line) is not JsonObject o || o["eventType"]?.GetValue<string>() is not { } type) return null;
            string? token = (o["command"] as JsonObject)?["token"]?.GetValue<string>();
            return new KernelEvent(type, token, o["event"] as JsonObject ?? new JsonObject());
        }
        catch (Exception e) when (e is JsonException or InvalidOperationException or FormatException)
        {
            return null;
        }
    }

    /// <summary>Kills the kernel's whole process tree (idempotent) and waits for it to go.</summary>
    public void Dispose()
    {
        try
        {
            if (!process.HasExited) process.Kill(entireProcessTree: true);
            process.WaitForExit(10_000);
        }
        catch (Exception e) when (e is InvalidOperationException or System.ComponentModel.Win32Exception) { }
        Task.WaitAll([stdoutPump, stderrPump], 5_000);
        process.Dispose();
    }
}
