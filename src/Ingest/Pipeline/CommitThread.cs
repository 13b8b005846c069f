using System.Collections.Concurrent;

namespace Telemetry.Ingest.Pipeline;

/// <summary>
/// A task scheduler with one thread of its own, for the commit loop. The embedded store commits synchronously (its
/// appends, its WAL's fsync): on the thread pool each commit held one of its few threads (two on two cores) for as long
/// as it took, while everything else (reading sockets, grain calls, sending acks) queued for the other.
/// </summary>
internal sealed class CommitThread : TaskScheduler, IDisposable
{
    private readonly BlockingCollection<Task> _tasks = [];
    private readonly Thread _thread;

    public CommitThread(string name)
    {
        _thread = new Thread(Run) { IsBackground = true, Name = name };
        _thread.Start();
    }

    public override int MaximumConcurrencyLevel => 1;

    public void Dispose() => _tasks.CompleteAdding();

    protected override void QueueTask(Task task)
    {
        try
        {
            _tasks.Add(task);
        }
        catch (InvalidOperationException)
        {
            // The loop has ended: anything it left still to run (a continuation of work it started) goes to the pool.
            ThreadPool.UnsafeQueueUserWorkItem(static state => state.Scheduler.TryExecuteTask(state.Task), (Scheduler: this, Task: task), preferLocal: false);
        }
    }

    protected override bool TryExecuteTaskInline(Task task, bool taskWasPreviouslyQueued) =>
        Thread.CurrentThread == _thread && TryExecuteTask(task);

    protected override IEnumerable<Task> GetScheduledTasks() => [.. _tasks];

    private void Run()
    {
        foreach (var task in _tasks.GetConsumingEnumerable())
        {
            TryExecuteTask(task);
        }
    }
}
