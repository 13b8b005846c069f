using Telemetry.Api.Hosting;

var builder = WebApplication.CreateBuilder(args);
builder.AddTelemetryServer();

var app = builder.Build();
app.MapTelemetryServer();
app.Run();
