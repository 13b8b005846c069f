using Telemetry.Api.Hosting;
using Telemetry.Api.Security;

// appsettings.json is read from beside the server's assembly (src/Api's, copied there at build), wherever the server
// is started from (`dotnet run` starts it in the folder it was run from, so that ./data is there), unless a content
// root is given; then from the working directory, whose file wins where both are. The files are read once: watching
// them for changes would watch their folder and all below it.
// The token command takes the server's settings given as --Telemetry:…=value, so that it finds the server's key.
string[] hostArgs = ["--hostBuilder:reloadConfigOnChange=false", .. args is [TokenCommand.Name, ..] ? args.Where(TokenCommand.IsSetting) : args];
var contentRootGiven = Environment.GetEnvironmentVariable("ASPNETCORE_CONTENTROOT") is { Length: > 0 }
    || hostArgs.Any(arg => arg.StartsWith("--contentRoot", StringComparison.OrdinalIgnoreCase));

// A setting that cannot work, a file that cannot be read or a port taken stops the start with what to change (exit 2),
// not an unhandled exception's stack.
WebApplication? app = null;
try
{
    var builder = WebApplication.CreateBuilder(new WebApplicationOptions
    {
        Args = hostArgs,
        ContentRootPath = contentRootGiven ? null : AppContext.BaseDirectory,
    });
    ConfigurationFiles.AddWorkingDirectorySettings(builder.Configuration, builder.Environment.ContentRootPath);
    builder.AddTelemetryServer();

    app = builder.Build();
    if (args is [TokenCommand.Name, .. var options])
    {
        // Mints a development token with the server's configuration and exits; nothing is started.
        return TokenCommand.Run(app, options, Console.Out, Console.Error);
    }

    app.MapTelemetryServer();
    await app.StartAsync();
}
catch (Exception exception) when (StartupFailure.Describe(exception, StartupFailure.ConfiguredServer(app?.Configuration)) is { } problems)
{
    if (app is not null)
    {
        using var stopping = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        await app.StopAsync(stopping.Token).ContinueWith(_ => { }, TaskScheduler.Default);
        await app.DisposeAsync();
    }

    return StartupFailure.Report(problems, exception, Console.Error);
}

await app.WaitForShutdownAsync();
await app.DisposeAsync();
return 0;
